// Checks for the hgfleet Helm chart, run by tests/integration/test_helm.sh.
//
//   node check.mjs release                  the release name to render with
//   node check.mjs scenarios                the scenario names
//   node check.mjs args SCENARIO            helm --set arguments, one per line
//   node check.mjs validate FILE...         every document against the Kubernetes schemas
//   node check.mjs assert SCENARIO FILE     the scenario's expectations on rendered manifests
//   node check.mjs values-table VALUES      the README's values table, from values.yaml
//   node check.mjs values-doc VALUES README fails unless README holds every row of that table
//   node check.mjs doc-blocks FILE.md...    every ```json / ```yaml block of the docs parses
//
// HGF_NODE_MODULES names the node_modules directory where tests/helm/package.json
// was installed (the test keeps it in the build directory).
//
// Validation is two-fold. The kubernetes-models validators (ajv, generated
// from the Kubernetes OpenAPI spec; the Prometheus Operator CRDs for
// ServiceMonitor) check types, enums and required fields. They allow unknown
// fields, as the OpenAPI spec does, so a strict pass walks each object along
// the package's TypeScript declarations and rejects any field they do not
// declare: a misspelt `readOnlyRootFileSystem` would otherwise pass silently,
// as kubectl's non-strict validation lets it.
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const NM = process.env.HGF_NODE_MODULES;
if (!NM || !existsSync(join(NM, "kubernetes-models")))
  die(`HGF_NODE_MODULES must name a node_modules with kubernetes-models (got "${NM ?? ""}")`);
const YAML = createRequire(join(NM, "noop.js"))("yaml");

function die(msg) {
  console.error(`check.mjs: ${msg}`);
  process.exit(2);
}

// ---------------------------------------------------------------- scenarios

const FAKE = {
  HGFLEET_DATABASE_URL: "postgresql://hgf:fake-db-pw-Q7x2@db.example:5432/hgfleet?sslmode=require",
  HGFLEET_WEBHOOK_TOKEN: "fake-webhook-token-3b9f0c1d",
  HGFLEET_ADMIN_TOKEN: "fake-admin-token-a91e77f0",
  // base64 of the 32 bytes "fake-master-key-for-hgfleet-test"
  HGFLEET_MASTER_KEY: "ZmFrZS1tYXN0ZXIta2V5LWZvci1oZ2ZsZWV0LXRlc3Q=",
};
const VALUE_OF = {
  HGFLEET_DATABASE_URL: "databaseUrl",
  HGFLEET_WEBHOOK_TOKEN: "webhookToken",
  HGFLEET_ADMIN_TOKEN: "adminToken",
  HGFLEET_MASTER_KEY: "masterKey",
};
const FILE_OF = {
  HGFLEET_DATABASE_URL: "database-url",
  HGFLEET_WEBHOOK_TOKEN: "webhook-token",
  HGFLEET_ADMIN_TOKEN: "admin-token",
  HGFLEET_MASTER_KEY: "master-key",
};
// The release name the test renders with; resource names derive from it.
const RELEASE = "hgf";
const FULLNAME = `${RELEASE}-hgfleet`;
const IRSA_ARN = "arn:aws:iam::111122223333:role/hgfleet-irsa";

const secretArgs = () =>
  Object.entries(FAKE).map(([env, v]) => `--set-string=secrets.${VALUE_OF[env]}=${v}`);

const SCENARIOS = {
  // No values at all: nothing secret configured, every option off.
  defaults: { args: [], secrets: {}, optional: false, grace: 25, replicas: 2 },
  // Every secret given as a value: the chart's Secret, mounted as files.
  secrets: {
    args: [...secretArgs(), "--set=shutdownGraceSeconds=40", "--set=replicaCount=3"],
    secrets: Object.fromEntries(Object.keys(FAKE).map((e) => [e, { name: FULLNAME, key: FILE_OF[e] }])),
    optional: false,
    grace: 40,
    replicas: 3,
  },
  irsa: {
    args: [`--set=aws.irsaRoleArn=${IRSA_ARN}`, "--set=aws.region=eu-west-1"],
    secrets: {},
    optional: false,
    grace: 25,
    replicas: 2,
    irsa: IRSA_ARN,
    config: { AWS_REGION: "eu-west-1" },
  },
  // Secrets the operator manages; an existingSecret wins over a value.
  existing: {
    args: [
      `--set-string=secrets.databaseUrl=${FAKE.HGFLEET_DATABASE_URL}`,
      "--set=existingSecret.databaseUrl.name=pg-conn",
      "--set=existingSecret.databaseUrl.key=uri",
      "--set=existingSecret.webhookToken.name=hgf-tokens",
      "--set=existingSecret.adminToken.name=hgf-tokens",
      "--set=existingSecret.adminToken.key=admin",
      "--set=existingSecret.masterKey.name=hgf-master",
    ],
    secrets: {
      HGFLEET_DATABASE_URL: { name: "pg-conn", key: "uri" },
      HGFLEET_WEBHOOK_TOKEN: { name: "hgf-tokens", key: "webhook-token" },
      HGFLEET_ADMIN_TOKEN: { name: "hgf-tokens", key: "admin" },
      HGFLEET_MASTER_KEY: { name: "hgf-master", key: "master-key" },
    },
    optional: false,
    grace: 25,
    replicas: 2,
  },
  // The same secrets through secretKeyRef instead of files.
  envrefs: {
    args: [...secretArgs(), "--set=secretsAsFiles=false"],
    secrets: Object.fromEntries(Object.keys(FAKE).map((e) => [e, { name: FULLNAME, key: FILE_OF[e] }])),
    asEnv: true,
    optional: false,
    grace: 25,
    replicas: 2,
  },
  // Every optional resource on.
  optional: {
    args: [
      ...secretArgs(),
      "--set=config.scanner=harbor:https://trivy-adapter.scanners.svc:8080",
      "--set=config.sweepSchedule=cron:0 3 * * 0",
      "--set=ingress.enabled=true",
      "--set=ingress.className=alb",
      "--set=ingress.host=hgfleet.example.com",
      "--set=ingress.tlsSecretName=hgfleet-tls",
      "--set=podDisruptionBudget.enabled=true",
      "--set=serviceMonitor.enabled=true",
      "--set=serviceMonitor.labels.release=prometheus",
      "--set=networkPolicy.enabled=true",
      "--set=networkPolicy.allowedNamespaceSelectors[0].matchLabels.kubernetes\\.io/metadata\\.name=ingress-nginx",
      "--set=networkPolicy.allowedPodSelectors[0].matchLabels.app=webhook-relay",
      "--set=networkPolicy.egress[0].ports[0].port=5432",
      "--set=autoscaling.enabled=true",
      "--set=autoscaling.minReplicas=2",
      "--set=autoscaling.maxReplicas=5",
    ],
    secrets: Object.fromEntries(Object.keys(FAKE).map((e) => [e, { name: FULLNAME, key: FILE_OF[e] }])),
    optional: true,
    grace: 25,
    config: {
      HGFLEET_SCANNER: "harbor:https://trivy-adapter.scanners.svc:8080",
      HGFLEET_SWEEP_SCHEDULE: "cron:0 3 * * 0",
    },
  },
};

// ---------------------------------------------------------------- YAML

function loadDocs(file) {
  const text = readFileSync(file, "utf8");
  // YAML 1.1, as Go's yaml (Helm, kubectl) reads it.
  const docs = YAML.parseAllDocuments(text, { version: "1.1" });
  const out = [];
  for (const d of docs) {
    if (d.errors.length) die(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v != null) out.push(v);
  }
  return { text, docs: out };
}

const id = (d) => `${d?.kind ?? "?"}/${d?.metadata?.name ?? "?"}`;

// ---------------------------------------------------------------- TypeScript declarations
// A small parser for the subset of TypeScript the generated .d.ts files use:
// interfaces, type aliases, unions, Array<T>, object literals, index signatures.

function tokenize(src) {
  const toks = [];
  const re = /\s+|\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_$][\w$]*|-?\d+(?:\.\d+)?|=>|\S/gy;
  let m;
  while ((m = re.exec(src))) {
    const t = m[0];
    if (/^\s/.test(t) || t.startsWith("/*") || t.startsWith("//")) continue;
    toks.push(t);
  }
  return toks;
}

const PRIMS = new Set(["string", "number", "boolean", "any", "unknown", "null", "undefined", "object", "true", "false", "never"]);

class Parser {
  constructor(toks, pos = 0) {
    this.t = toks;
    this.i = pos;
  }
  peek() { return this.t[this.i]; }
  next() { return this.t[this.i++]; }
  eat(tok) {
    if (this.t[this.i] !== tok) throw new Error(`expected ${tok}, got ${this.t[this.i]} at ${this.i}`);
    this.i++;
  }
  type() {
    if (this.peek() === "|") this.next();
    const parts = [this.postfix()];
    while (this.peek() === "|" || this.peek() === "&") {
      this.next();
      parts.push(this.postfix());
    }
    return parts.length === 1 ? parts[0] : { k: "union", of: parts };
  }
  postfix() {
    let t = this.primary();
    while (this.peek() === "[" && this.t[this.i + 1] === "]") {
      this.i += 2;
      t = { k: "array", of: t };
    }
    return t;
  }
  primary() {
    const tok = this.next();
    if (tok === "{") return this.members();
    if (tok === "(") {
      const t = this.type();
      this.eat(")");
      return t;
    }
    if (/^["'\d-]/.test(tok)) return { k: "prim" };
    if (PRIMS.has(tok)) return { k: tok === "object" || tok === "any" || tok === "unknown" ? "any" : "prim" };
    let name = tok;
    while (this.peek() === ".") {
      this.next();
      name += "." + this.next();
    }
    let args = [];
    if (this.peek() === "<") {
      this.next();
      args.push(this.type());
      while (this.peek() === ",") {
        this.next();
        args.push(this.type());
      }
      this.eat(">");
    }
    if (name === "Array" || name === "ReadonlyArray") return { k: "array", of: args[0] };
    if (name === "Record") return { k: "object", props: {}, index: args[1] };
    return { k: "ref", name };
  }
  // After "{": members up to the matching "}".
  members() {
    const props = {};
    let index = null;
    while (this.peek() !== "}") {
      if (this.peek() === "readonly") this.next();
      if (this.peek() === "[") {
        this.next();
        this.next(); // key name
        this.eat(":");
        this.type();
        this.eat("]");
        this.eat(":");
        index = this.type();
      } else {
        let key = this.next();
        if (/^["']/.test(key)) key = JSON.parse(key.startsWith("'") ? `"${key.slice(1, -1)}"` : key);
        if (this.peek() === "?") this.next();
        this.eat(":");
        props[key] = this.type();
      }
      if (this.peek() === ";" || this.peek() === ",") this.next();
    }
    this.eat("}");
    return { k: "object", props, index };
  }
}

const declCache = new Map();

// One .d.ts file: its imports, its interfaces and type aliases, its re-exports.
function parseDecls(file) {
  if (declCache.has(file)) return declCache.get(file);
  const toks = tokenize(readFileSync(file, "utf8"));
  const f = { file, imports: {}, decls: {}, aliases: {} };
  for (let i = 0; i < toks.length; i++) {
    if (toks[i] === "import" && toks[i + 1] === "{") {
      const names = [];
      let j = i + 2;
      for (; toks[j] !== "}"; j++) if (toks[j] !== ",") names.push(toks[j]);
      const spec = JSON.parse(toks[j + 2]);
      for (const n of names) f.imports[n] = spec;
      i = j;
    } else if (toks[i] === "export" && toks[i + 1] === "interface") {
      const name = toks[i + 2];
      let j = i + 3;
      const parents = [];
      if (toks[j] === "extends") {
        for (j++; toks[j] !== "{"; j++) if (toks[j] !== ",") parents.push(toks[j]);
      }
      const p = new Parser(toks, j + 1);
      const obj = p.members();
      obj.parents = parents;
      f.decls[name] = obj;
      i = p.i - 1;
    } else if (toks[i] === "export" && toks[i + 1] === "type" && toks[i + 2] === "{") {
      let j = i + 3;
      for (; toks[j] !== "}"; j++) {
        if (toks[j + 1] === "as") {
          f.aliases[toks[j + 2]] = toks[j];
          j += 2;
        }
      }
      i = j;
    } else if (toks[i] === "export" && toks[i + 1] === "type" && toks[i + 3] === "=") {
      const p = new Parser(toks, i + 4);
      f.decls[toks[i + 2]] = p.type();
      i = p.i - 1;
    }
  }
  declCache.set(file, f);
  return f;
}

function importPath(from, spec) {
  let p = spec.startsWith(".") ? resolve(dirname(from), spec) : join(NM, spec);
  p = p.replace(/\.js$/, "");
  return `${p}.d.ts`;
}

// Resolves a named type as seen from file f: {type, f} or null for names
// outside the generated models (Model, TypeMeta from @kubernetes-models/base).
function resolveRef(name, f) {
  if (f.decls[name]) return { type: f.decls[name], f };
  if (f.aliases[name] && f.decls[f.aliases[name]]) return { type: f.decls[f.aliases[name]], f };
  const spec = f.imports[name];
  if (!spec) throw new Error(`${f.file}: type ${name} is neither declared nor imported`);
  if (spec === "@kubernetes-models/base") return null;
  const path = importPath(f.file, spec);
  if (!existsSync(path)) throw new Error(`${f.file}: cannot find ${spec} (for ${name})`);
  const g = parseDecls(path);
  const local = g.aliases[name] ?? name;
  if (!g.decls[local]) throw new Error(`${path}: no declaration of ${name}`);
  return { type: g.decls[local], f: g };
}

function strictCheck(value, type, f, path, errs) {
  switch (type.k) {
    case "prim":
    case "any":
      return;
    case "ref": {
      const r = resolveRef(type.name, f);
      if (r) strictCheck(value, r.type, r.f, path, errs);
      return;
    }
    case "array":
      if (Array.isArray(value)) value.forEach((v, i) => strictCheck(v, type.of, f, `${path}[${i}]`, errs));
      return;
    case "union": {
      let best = null;
      for (const t of type.of) {
        const e = [];
        strictCheck(value, t, f, path, e);
        if (!e.length) return;
        if (!best || e.length < best.length) best = e;
      }
      errs.push(...best);
      return;
    }
    case "object": {
      if (value === null || typeof value !== "object" || Array.isArray(value)) return;
      const props = { ...type.props };
      for (const p of type.parents ?? []) {
        const r = resolveRef(p, f);
        if (r?.type.k === "object") Object.assign(props, r.type.props);
      }
      for (const [k, v] of Object.entries(value)) {
        if (props[k]) strictCheck(v, props[k], f, `${path}.${k}`, errs);
        else if (type.index) strictCheck(v, type.index, f, `${path}.${k}`, errs);
        else errs.push(`${path}.${k}: unknown field`);
      }
      return;
    }
    default:
      throw new Error(`unhandled type kind ${type.k}`);
  }
}

// ---------------------------------------------------------------- validation

// apiVersion → the module directory of its models.
function modelDir(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com")
    return join(NM, "@kubernetes-models/prometheus-operator", group, version);
  return join(NM, "kubernetes-models", group, version);
}

async function validateDoc(doc) {
  if (!doc.apiVersion || !doc.kind) return [`${id(doc)}: apiVersion and kind are required`];
  const dir = modelDir(doc.apiVersion);
  const js = join(dir, `${doc.kind}.js`);
  if (!existsSync(js)) return [`${id(doc)}: no schema for ${doc.apiVersion} ${doc.kind}`];
  const mod = await import(pathToFileURL(js).href);
  const errs = [];
  try {
    new mod[doc.kind](doc).validate();
  } catch (e) {
    errs.push(`${id(doc)}: ${e.message}`);
  }
  const f = parseDecls(join(dir, `${doc.kind}.d.ts`));
  const strict = [];
  strictCheck(doc, f.decls[`I${doc.kind}`], f, "", strict);
  errs.push(...strict.map((e) => `${id(doc)}: ${e}`));
  if (!doc.metadata?.name) errs.push(`${id(doc)}: metadata.name is required`);
  return errs;
}

async function cmdValidate(files) {
  let n = 0;
  const errs = [];
  for (const file of files) {
    for (const doc of loadDocs(file).docs) {
      n++;
      errs.push(...(await validateDoc(doc)).map((e) => `${file}: ${e}`));
    }
  }
  if (!n) die("no documents to validate");
  if (errs.length) {
    console.error(errs.join("\n"));
    process.exit(1);
  }
  console.log(`${n} documents valid`);
}

// ---------------------------------------------------------------- assertions

class Checker {
  constructor(name) {
    this.name = name;
    this.fails = [];
    this.count = 0;
  }
  ok(cond, msg) {
    this.count++;
    if (!cond) this.fails.push(msg);
  }
  eq(actual, expected, msg) {
    const a = JSON.stringify(actual), e = JSON.stringify(expected);
    this.ok(a === e, `${msg}: expected ${e}, got ${a}`);
  }
}

const matches = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

function podSpecs(docs) {
  return docs
    .filter((d) => d.kind === "Deployment" || d.kind === "Job")
    .map((d) => ({ owner: id(d), spec: d.spec.template.spec, labels: d.spec.template.metadata?.labels }));
}

function checkSecurity(c, owner, spec) {
  const p = spec.securityContext ?? {};
  c.eq(p.runAsNonRoot, true, `${owner} pod runAsNonRoot`);
  c.eq(p.runAsUser, 10001, `${owner} pod runAsUser`);
  c.ok(Number.isInteger(p.fsGroup), `${owner} pod fsGroup is set`);
  c.eq(p.seccompProfile?.type, "RuntimeDefault", `${owner} pod seccompProfile`);
  for (const ct of spec.containers) {
    const s = ct.securityContext ?? {};
    c.eq(s.allowPrivilegeEscalation, false, `${owner} ${ct.name} allowPrivilegeEscalation`);
    c.eq(s.readOnlyRootFilesystem, true, `${owner} ${ct.name} readOnlyRootFilesystem`);
    c.eq(s.capabilities?.drop, ["ALL"], `${owner} ${ct.name} capabilities.drop`);
    const tmp = (ct.volumeMounts ?? []).find((m) => m.mountPath === "/tmp");
    const vol = (spec.volumes ?? []).find((v) => v.name === tmp?.name);
    c.ok(vol?.emptyDir, `${owner} ${ct.name} has an emptyDir at /tmp`);
    c.ok(ct.resources?.requests && ct.resources?.limits, `${owner} ${ct.name} has resource requests and limits`);
  }
}

// Where each secret variable comes from in one container: {name, key} of the
// Secret, following *_FILE through the mount to the projected volume.
function secretSources(spec, ct) {
  const out = {};
  for (const e of ct.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) out[e.name] = { name: ref.name, key: ref.key, via: "env" };
    if (!e.name.endsWith("_FILE") || e.value == null) continue;
    const mount = (ct.volumeMounts ?? []).find((m) => e.value.startsWith(m.mountPath + "/"));
    const vol = (spec.volumes ?? []).find((v) => v.name === mount?.name);
    const file = e.value.slice((mount?.mountPath.length ?? 0) + 1);
    for (const src of vol?.projected?.sources ?? [])
      for (const it of src.secret?.items ?? [])
        if (it.path === file) out[e.name.slice(0, -5)] = { name: src.secret.name, key: it.key, via: "file" };
    if (vol?.secret)
      for (const it of vol.secret.items ?? [])
        if (it.path === file) out[e.name.slice(0, -5)] = { name: vol.secret.secretName, key: it.key, via: "file" };
  }
  return out;
}

function checkNoLeaks(c, text, docs) {
  for (const [env, fake] of Object.entries(FAKE)) {
    c.ok(!text.includes(fake), `${env}'s value appears in clear in the rendered manifests`);
    const b64 = Buffer.from(fake).toString("base64");
    for (const d of docs) {
      const s = JSON.stringify(d);
      if (d.kind !== "Secret") c.ok(!s.includes(b64), `${env}'s value (base64) appears in ${id(d)}`);
      if (d.kind === "ConfigMap") c.ok(!s.includes(fake), `${env}'s value appears in ConfigMap ${id(d)}`);
    }
    for (const { owner, spec } of podSpecs(docs))
      for (const ct of [...spec.containers, ...(spec.initContainers ?? [])])
        for (const e of ct.env ?? []) {
          c.ok(e.value == null || (!e.value.includes(fake) && !e.value.includes(b64)),
            `${owner} ${ct.name} env ${e.name} holds ${env}'s value`);
          c.ok(!(e.name === env && e.value != null), `${owner} ${ct.name} sets ${env} as a plain value`);
        }
  }
}

function checkDeployment(c, sc, docs) {
  const deps = docs.filter((d) => d.kind === "Deployment");
  c.eq(deps.length, 1, "Deployments");
  const dep = deps[0];
  const spec = dep.spec.template.spec;
  const ct = spec.containers.find((x) => x.name === "hgfleet");
  c.ok(ct, "the Deployment has a container named hgfleet");
  if (!ct) return;
  c.eq(ct.args, ["serve"], "container args");
  c.eq(ct.ports?.find((p) => p.name === "http")?.containerPort, 8080, "port http");
  c.eq(ct.livenessProbe?.httpGet, { path: "/healthz", port: "http" }, "liveness probe");
  c.eq(ct.readinessProbe?.httpGet, { path: "/readyz", port: "http" }, "readiness probe");
  c.eq(dep.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } }, "strategy");
  c.eq(spec.terminationGracePeriodSeconds, sc.grace + 5, "terminationGracePeriodSeconds");
  const cm = docs.find((d) => d.kind === "ConfigMap");
  c.eq(cm?.data?.HGFLEET_SHUTDOWN_GRACE, String(sc.grace), "HGFLEET_SHUTDOWN_GRACE in the ConfigMap");
  c.ok((ct.envFrom ?? []).some((e) => e.configMapRef?.name === cm?.metadata.name), "the container loads the ConfigMap");
  for (const [k, v] of Object.entries(sc.config ?? {})) c.eq(cm?.data?.[k], v, `ConfigMap ${k}`);
  c.eq(dep.spec.replicas, sc.optional ? undefined : sc.replicas, "replicas (none with an HPA)");
  const sa = docs.find((d) => d.kind === "ServiceAccount");
  c.eq(spec.serviceAccountName, sa?.metadata.name, "the pods use the chart's ServiceAccount");
  c.eq(sa?.metadata.annotations?.["eks.amazonaws.com/role-arn"], sc.irsa, "IRSA annotation");
  c.eq(sa?.automountServiceAccountToken, false, "ServiceAccount automountServiceAccountToken");
  c.eq(secretSources(spec, ct), withVia(sc), "the Deployment's secret sources");
  if (!sc.asEnv && Object.keys(sc.secrets).length)
    c.ok(ct.volumeMounts.some((m) => m.name === "secrets" && m.readOnly), "the secrets are mounted read-only");
}

function withVia(sc) {
  return Object.fromEntries(Object.entries(sc.secrets).map(([k, v]) => [k, { ...v, via: sc.asEnv ? "env" : "file" }]));
}

function checkSecret(c, sc, docs) {
  const own = docs.filter((d) => d.kind === "Secret" && !d.metadata.annotations?.["helm.sh/hook"]);
  const held = Object.entries(sc.secrets).filter(([, s]) => s.name === FULLNAME);
  c.eq(own.length, held.length ? 1 : 0, "the chart's Secrets");
  for (const [env, s] of held) {
    const data = own[0]?.data?.[s.key];
    c.eq(data && Buffer.from(data, "base64").toString(), FAKE[env], `the Secret's ${s.key}`);
  }
}

function checkMigrate(c, sc, docs) {
  const job = docs.find((d) => d.kind === "Job");
  c.ok(job, "a migrate Job");
  if (!job) return;
  const a = job.metadata.annotations ?? {};
  c.eq(a["helm.sh/hook"], "pre-install,pre-upgrade", "migrate hook events");
  c.ok(/^-?\d+$/.test(a["helm.sh/hook-weight"] ?? ""), "migrate hook-weight is set");
  c.eq(a["helm.sh/hook-delete-policy"], "before-hook-creation,hook-succeeded", "migrate hook delete policy");
  const spec = job.spec.template.spec;
  c.eq(spec.containers[0].args, ["migrate"], "migrate args");
  c.eq(spec.restartPolicy, "Never", "migrate restartPolicy");
  c.ok(!spec.serviceAccountName, "migrate uses no chart ServiceAccount (it does not exist before install)");
  const src = secretSources(spec, spec.containers[0]);
  const db = sc.secrets.HGFLEET_DATABASE_URL;
  const hooks = docs.filter((d) => d.kind === "Secret" && d.metadata.annotations?.["helm.sh/hook"]);
  if (!db) {
    c.eq(src, {}, "migrate secret sources");
    c.eq(hooks.length, 0, "hook Secrets without a database URL");
    return;
  }
  c.eq(Object.keys(src), ["HGFLEET_DATABASE_URL"], "migrate gets the database URL and nothing else");
  if (db.name !== FULLNAME) {
    c.eq({ name: src.HGFLEET_DATABASE_URL?.name, key: src.HGFLEET_DATABASE_URL?.key }, db, "migrate's database secret");
    c.eq(hooks.length, 0, "no hook Secret with an existing database secret");
    return;
  }
  // The chart's Secret does not exist yet in pre-install: a hook Secret, older
  // (lower weight) than the Job, carries the URL.
  const hook = hooks.find((h) => h.metadata.name === src.HGFLEET_DATABASE_URL?.name);
  c.ok(hook, "migrate's database URL comes from a hook Secret");
  if (!hook) return;
  const ha = hook.metadata.annotations;
  c.eq(ha["helm.sh/hook"], "pre-install,pre-upgrade", "hook Secret events");
  c.ok(Number(ha["helm.sh/hook-weight"]) < Number(a["helm.sh/hook-weight"]), "the hook Secret is created before the Job");
  c.eq(ha["helm.sh/hook-delete-policy"], "before-hook-creation,hook-succeeded", "hook Secret delete policy");
  const data = hook.data?.[src.HGFLEET_DATABASE_URL.key];
  c.eq(data && Buffer.from(data, "base64").toString(), FAKE.HGFLEET_DATABASE_URL, "hook Secret's database URL");
}

function checkService(c, docs) {
  const svc = docs.find((d) => d.kind === "Service");
  c.eq(svc?.spec.type, "ClusterIP", "Service type");
  c.eq(svc?.spec.ports, [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }], "Service ports");
  const dep = docs.find((d) => d.kind === "Deployment");
  const job = docs.find((d) => d.kind === "Job");
  c.ok(matches(svc?.spec.selector, dep?.spec.template.metadata.labels), "the Service selects the Deployment's pods");
  c.ok(matches(dep?.spec.selector.matchLabels, dep?.spec.template.metadata.labels), "the Deployment selects its pods");
  if (job) {
    c.ok(!matches(svc?.spec.selector, job.spec.template.metadata.labels), "the Service does not select the migrate pod");
    c.ok(!matches(dep?.spec.selector.matchLabels, job.spec.template.metadata.labels), "the Deployment does not select the migrate pod");
  }
}

function checkLabels(c, docs) {
  for (const d of docs) {
    const l = d.metadata.labels ?? {};
    for (const k of ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"])
      c.ok(l[k], `${id(d)} has label ${k}`);
  }
}

function checkOptional(c, sc, docs) {
  const kinds = ["Ingress", "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy", "HorizontalPodAutoscaler"];
  const present = kinds.filter((k) => docs.some((d) => d.kind === k));
  c.eq(present, sc.optional ? kinds : [], "optional resources");
  if (!sc.optional) return;
  const dep = docs.find((d) => d.kind === "Deployment");
  const podLabels = dep.spec.template.metadata.labels;
  const svc = docs.find((d) => d.kind === "Service");

  const ing = docs.find((d) => d.kind === "Ingress");
  c.eq(ing.spec.ingressClassName, "alb", "Ingress class");
  c.eq(ing.spec.tls, [{ hosts: ["hgfleet.example.com"], secretName: "hgfleet-tls" }], "Ingress TLS");
  const paths = ing.spec.rules.flatMap((r) => r.http.paths.map((p) => ({ host: r.host, ...p })));
  c.eq(paths, [{ host: "hgfleet.example.com", path: "/api/webhooks/ecr", pathType: "Exact",
    backend: { service: { name: svc.metadata.name, port: { name: "http" } } } }], "Ingress exposes the webhook path only");

  const pdb = docs.find((d) => d.kind === "PodDisruptionBudget");
  c.eq(pdb.spec.minAvailable, 1, "PDB minAvailable");
  c.ok(matches(pdb.spec.selector.matchLabels, podLabels), "the PDB selects the Deployment's pods");

  const sm = docs.find((d) => d.kind === "ServiceMonitor");
  c.eq(sm.apiVersion, "monitoring.coreos.com/v1", "ServiceMonitor apiVersion");
  c.eq(sm.spec.endpoints.map((e) => [e.port, e.path]), [["http", "/metrics"]], "ServiceMonitor endpoint");
  c.ok(matches(sm.spec.selector.matchLabels, svc.metadata.labels), "the ServiceMonitor selects the Service");
  c.eq(sm.metadata.labels.release, "prometheus", "ServiceMonitor extra label");

  const np = docs.find((d) => d.kind === "NetworkPolicy");
  c.ok(matches(np.spec.podSelector.matchLabels, podLabels), "the NetworkPolicy selects the Deployment's pods");
  c.eq(np.spec.policyTypes, ["Ingress", "Egress"], "NetworkPolicy types");
  c.eq(np.spec.ingress, [{
    ports: [{ port: 8080, protocol: "TCP" }],
    from: [
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ingress-nginx" } } },
      { podSelector: { matchLabels: { app: "webhook-relay" } } },
    ],
  }], "NetworkPolicy ingress");
  c.eq(np.spec.egress, [{ ports: [{ port: 5432 }] }], "NetworkPolicy egress");

  const hpa = docs.find((d) => d.kind === "HorizontalPodAutoscaler");
  c.eq(hpa.apiVersion, "autoscaling/v2", "HPA apiVersion");
  c.eq(hpa.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: dep.metadata.name }, "HPA target");
  c.eq([hpa.spec.minReplicas, hpa.spec.maxReplicas], [2, 5], "HPA bounds");
}

function cmdAssert(name, file) {
  const sc = SCENARIOS[name] ?? die(`unknown scenario ${name}`);
  const { text, docs } = loadDocs(file);
  const c = new Checker(name);
  for (const d of docs) c.ok(d.metadata?.namespace == null || typeof d.metadata.namespace === "string", `${id(d)} namespace`);
  checkLabels(c, docs);
  for (const { owner, spec } of podSpecs(docs)) checkSecurity(c, owner, spec);
  checkDeployment(c, sc, docs);
  checkSecret(c, sc, docs);
  checkMigrate(c, sc, docs);
  checkService(c, docs);
  checkOptional(c, sc, docs);
  checkNoLeaks(c, text, docs);
  const cms = docs.filter((d) => d.kind === "ConfigMap");
  for (const cm of cms)
    for (const k of Object.keys(cm.data ?? {}))
      c.ok(!/TOKEN$|_KEY$|DATABASE_URL|PASSWORD|SECRET/.test(k) || k === "HGFLEET_WEBHOOK_API_KEY_HEADER",
        `ConfigMap ${id(cm)} holds a secret-looking variable ${k}`);
  if (c.fails.length) {
    console.error(`scenario ${name}: ${c.fails.length} of ${c.count} checks failed:\n  ${c.fails.join("\n  ")}`);
    process.exit(1);
  }
  console.log(`scenario ${name}: ${c.count} checks passed on ${docs.length} documents`);
}

// ---------------------------------------------------------------- values table

// Rows for every value: a key whose comment starts with "-- " is one row
// (helm-docs' convention, used for objects passed through to Kubernetes);
// other maps are walked; scalars, lists and empty maps are rows.
function valueRows(node, prefix, rows) {
  node.items.forEach((pair, i) => {
    const key = `${prefix}${pair.key.value}`;
    // The parser hangs a comment above a map's first key on the map itself.
    const raw = pair.key.commentBefore ?? (i === 0 ? node.commentBefore : null) ?? "";
    // Only the last paragraph: a file's header comment may precede it.
    const comment = raw.trim().split(/\n\s*\n/).pop();
    const documented = /(^|\n)\s*-- /.test(comment);
    const desc = documented ? comment.slice(comment.search(/-- /) + 3).replace(/\s*\n\s*/g, " ") : "";
    const v = pair.value;
    if (!documented && YAML.isMap(v) && v.items.length) {
      valueRows(v, `${key}.`, rows);
      return;
    }
    if (!documented) die(`values.yaml: ${key} has no "# -- description" comment`);
    rows.push(`| \`${key}\` | \`${JSON.stringify(v.toJSON())}\` | ${desc.replace(/\|/g, "\\|")} |`);
  });
  return rows;
}

function tableOf(valuesFile) {
  const doc = YAML.parseDocument(readFileSync(valuesFile, "utf8"));
  if (doc.errors.length) die(`${valuesFile}: ${doc.errors[0].message}`);
  return valueRows(doc.contents, "", []);
}

function cmdValuesDoc(valuesFile, readme) {
  const text = readFileSync(readme, "utf8");
  const missing = tableOf(valuesFile).filter((r) => !text.includes(r));
  if (missing.length) {
    console.error(`${readme} lacks these rows (regenerate with: node check.mjs values-table ${valuesFile}):\n${missing.join("\n")}`);
    process.exit(1);
  }
  console.log(`${readme} documents every value`);
}

// ---------------------------------------------------------------- docs

// Every ```json and ```yaml block of the given Markdown files parses (YAML
// blocks may use CloudFormation's short tags such as !GetAtt).
function cmdDocBlocks(files) {
  let n = 0;
  const errs = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    // Blocks may be indented under a list item: the fence's indent is removed.
    for (const m of text.matchAll(/^( *)```(json|yaml)\n([\s\S]*?)^\1```$/gm)) {
      n++;
      const line = text.slice(0, m.index).split("\n").length;
      const body = m[3].split("\n").map((l) => l.slice(m[1].length)).join("\n");
      try {
        if (m[2] === "json") JSON.parse(body);
        else {
          const d = YAML.parseDocument(body);
          if (d.errors.length) throw new Error(d.errors[0].message);
        }
      } catch (e) {
        errs.push(`${file}:${line}: ${m[2]} block does not parse: ${e.message}`);
      }
    }
  }
  if (errs.length) {
    console.error(errs.join("\n"));
    process.exit(1);
  }
  console.log(`${n} JSON and YAML blocks parse`);
}

// ---------------------------------------------------------------- main

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === "args") {
  const sc = SCENARIOS[rest[0]] ?? die(`unknown scenario ${rest[0]}`);
  for (const a of [sc.args].flat()) console.log(a);
} else if (cmd === "release") {
  console.log(RELEASE);
} else if (cmd === "scenarios") {
  console.log(Object.keys(SCENARIOS).join("\n"));
} else if (cmd === "validate" && rest.length) {
  await cmdValidate(rest);
} else if (cmd === "assert" && rest.length === 2) {
  cmdAssert(rest[0], rest[1]);
} else if (cmd === "values-table" && rest.length === 1) {
  console.log("| value | default | description |\n|---|---|---|");
  console.log(tableOf(rest[0]).join("\n"));
} else if (cmd === "doc-blocks" && rest.length) {
  cmdDocBlocks(rest);
} else if (cmd === "values-doc" && rest.length === 2) {
  cmdValuesDoc(rest[0], rest[1]);
} else {
  die("usage: check.mjs release|args|scenarios|validate|assert|values-table|values-doc|doc-blocks ...");
}
