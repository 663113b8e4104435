#!/usr/bin/env python3
"""The baseline: a boto-style fleet sweeper.

Lists every registry as a typical Python tool would: a ThreadPoolExecutor of
32, one task per (account, region), botocore's paginators for
DescribeRepositories and then DescribeImages per repository (1,000 per page,
the same pages hgfleet asks for), standard retries, and no database.

    baseline_boto.py --layer DIR --endpoint URL --registries FILE [--threads 32]

DIR is the AWS CLI v1 layer that scripts/fetch-awscli unpacks (the directory
holding awscli/); its vendored botocore is used. FILE holds account,region
lines. Prints one JSON object on stdout.
"""
import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", required=True, help="the awscli layer directory")
    p.add_argument("--endpoint", required=True, help="ECR endpoint URL (ecrsim)")
    p.add_argument("--registries", required=True, help="account,region lines")
    p.add_argument("--threads", type=int, default=32)
    return p.parse_args()


def load_botocore(layer):
    # awscli v1 vendors botocore as awscli.botocore and registers it under
    # the plain name when imported, as the CLI itself does.
    sys.path.insert(0, layer)
    import awscli  # noqa: F401
    import botocore
    import botocore.config
    import botocore.session
    return botocore


def read_registries(path):
    regs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", "account_id")):
                continue
            account, region = line.replace(" ", ",").split(",")[:2]
            regs.append((account, region))
    return regs


class Sweeper:
    def __init__(self, botocore, endpoint, threads):
        session = botocore.session.get_session()
        session.set_credentials(
            os.environ.get("AWS_ACCESS_KEY_ID", "AKIDECRSIMDEFAULT"),
            os.environ.get("AWS_SECRET_ACCESS_KEY", "ecrsim-default-secret"))
        # One pooled connection per thread, or urllib3's default of 10 would
        # make the baseline slower than a careful user would.
        self.config = botocore.config.Config(
            max_pool_connections=threads, retries={"mode": "standard", "max_attempts": 3})
        self.session, self.endpoint = session, endpoint
        self.clients, self.lock = {}, threading.Lock()
        self.pages = self.repositories = self.images = 0

    def client(self, region):
        with self.lock:
            if region not in self.clients:
                self.clients[region] = self.session.create_client(
                    "ecr", region_name=region, endpoint_url=self.endpoint, config=self.config)
            return self.clients[region]

    def sweep_registry(self, reg):
        account, region = reg
        ecr = self.client(region)
        pages = repos = images = 0
        cfg = {"PageSize": 1000}
        names = []
        for page in ecr.get_paginator("describe_repositories").paginate(
                registryId=account, PaginationConfig=cfg):
            pages += 1
            names += [r["repositoryName"] for r in page["repositories"]]
        for name in names:
            repos += 1
            for page in ecr.get_paginator("describe_images").paginate(
                    registryId=account, repositoryName=name, PaginationConfig=cfg):
                pages += 1
                images += len(page["imageDetails"])
        with self.lock:
            self.pages += pages
            self.repositories += repos
            self.images += images


def main():
    args = parse_args()
    botocore = load_botocore(args.layer)
    regs = read_registries(args.registries)
    sweeper = Sweeper(botocore, args.endpoint, args.threads)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for _ in pool.map(sweeper.sweep_registry, regs):
            pass
    wall = time.monotonic() - t0
    print(json.dumps({"registries": len(regs), "repositories": sweeper.repositories,
                      "images": sweeper.images, "calls": sweeper.pages,
                      "wall_seconds": round(wall, 3), "threads": args.threads,
                      "botocore": botocore.__version__}))


if __name__ == "__main__":
    main()
