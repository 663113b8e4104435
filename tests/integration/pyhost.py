import os, runpy, sys, traceback
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
    import awscli.clidriver  # noqa: F401  (its import sets AWS_DATA_PATH: keep it for every run)
requests, answers = os.fdopen(3), os.fdopen(os.dup(1), "w")
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 1)
base_env, host_err = dict(os.environ), os.dup(2)
for line in requests:
    base = line.rstrip("\n")
    with open(base + ".args", "rb") as f:
        fields = [x.decode() for x in f.read().split(b"\0")[:-1]]
    n = int(fields[0])
    os.environ.clear()
    os.environ.update(base_env)
    for e in fields[1:1 + n]:
        if e.startswith("-u"):
            os.environ.pop(e[2:], None)
        else:
            os.environ.__setitem__(*e.split("=", 1))
    inp = open(fields[1 + n] or os.devnull)
    out, err = open(base + ".out", "w"), open(base + ".err", "w")
    for f, fd in ((inp, 0), (out, 1), (err, 2)):
        os.dup2(f.fileno(), fd)
    sys.stdin, sys.stdout, sys.stderr, sys.argv, rc = inp, out, err, fields[2 + n:], 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        rc = 1
    for s in (sys.stdout, sys.stderr, out, err):
        s.flush()
    for f in (inp, out, err):
        f.close()
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(host_err, 2)
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
    answers.write(f"{rc}\n")
    answers.flush()
