#!/usr/bin/python3
"""Checks that every Python module the tests import and every program they run is declared in
scripts/deps.list (the one dependency list, which scripts/install-deps.sh installs), that every
declared package is installed, and that README.md's dependency paragraph is generated from the list.

usage: deps_check.py [--list FILE] [--readme FILE] [--scan PATH]... [--write-readme] SOURCE_DIR

Scanned by default: SOURCE_DIR/tests (C, shell, Python, CMake; not tests/deps_fixture, the
deliberately undeclared sources of tests/deps_can_fail.sh) and, when MK_SHARED_DIR is set, the
conformance runner the tests call (MK_SHARED_DIR/toml-test). Python modules are found from
`import X` / `from X import` anywhere in those files (also inside C string literals and
`tio_have_py("X, Y")` calls) and from files used by path under /usr/lib/python3/dist-packages/X;
the standard library needs no line. Programs are the words in
command position of shell text (shell files, CMake `COMMAND`s, C string literals) that resolve to
an executable, or absolute /usr/bin paths; programs of Debian's Essential packages need no line.
A used module or program is resolved to its Debian package with dpkg, so a failure names both.
Exit 0 when all is declared, 1 with one line per problem otherwise, 2 on usage errors.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

README_BEGIN = "<!-- deps: generated from scripts/deps.list by tests/deps_check.py --write-readme -->"
README_END = "<!-- deps: end -->"

SHELL_WORDS = {
    # shell keywords, builtins and CMake/ctest words that look like commands
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "in", "function", "select", "time", "!", "{", "}", "[[", "]]", "exec", "command", "builtin",
    "set", "unset", "export", "local", "readonly", "declare", "typeset", "return", "exit", "shift",
    "cd", "pwd", "echo", "printf", "read", "eval", "trap", "wait", "source", ".", ":", "true",
    "false", "test", "[", "kill", "ulimit", "umask", "getopts", "type", "hash", "jobs", "fg", "bg",
    "let", "mapfile", "alias", "break", "continue",
}


def parse_list(path):
    """[(package, role, [provides], doc)] from the list; raises ValueError naming the line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = [p.strip() for p in s.split("|")]
            if len(parts) != 4 or not parts[0]:
                raise ValueError("%s:%d: expected 'package | role | provides | what for'" % (path, n))
            pkg, role, prov, doc = parts
            if role not in ("build", "test", "optional"):
                raise ValueError("%s:%d: package %s: unknown role '%s' (build, test or optional)"
                                 % (path, n, pkg, role))
            items = prov.split()
            for it in items:
                if not re.fullmatch(r"(py|bin):[A-Za-z0-9_.+-]+", it):
                    raise ValueError("%s:%d: package %s: '%s' is not py:MODULE or bin:PROGRAM"
                                     % (path, n, pkg, it))
            rows.append((pkg, role, items, doc))
    return rows


# ----------------------------------------------------------------------------- scanning


def c_string_literals(text):
    """Adjacent C string literals joined (as the compiler does), escapes \\n \\t \\" \\\\ decoded;
    yields (line, text). Comments are skipped."""
    i, n, line = 0, len(text), 1
    cur, cur_line = None, 0
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += text.count("\n", i, j)
            i = j
            continue
        if ch == "'":  # character literal
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    e = text[j + 1]
                    buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'"}.get(e, "\\" + e))
                    j += 2
                else:
                    if text[j] == "\n":
                        line += 1
                    buf.append(text[j])
                    j += 1
            s = "".join(buf)
            if cur is None:
                cur, cur_line = s, line
            else:
                cur += s
            i = j + 1
            continue
        if not ch.isspace() and cur is not None:
            yield cur_line, cur
            cur = None
        i += 1
    if cur is not None:
        yield cur_line, cur


# a Python statement starts a line, follows ';' or opens `python3 -c '...'`
_STMT = r"(?:^|;|-c\s*['\"])[ \t]*"
IMPORT_RE = re.compile(_STMT + r"import\s+([A-Za-z_][\w.]*(?:\s+as\s+\w+)?(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*(?:\s+as\s+\w+)?)*)", re.M)
FROM_RE = re.compile(_STMT + r"from\s+([A-Za-z_][\w.]*)\s+import\b", re.M)
HAVE_PY_RE = re.compile(r"tio_(?:have|require)_py\(\s*\"([^\"]+)\"")


def python_modules(text):
    """Top-level module names imported by Python code anywhere in text."""
    mods = set()
    for m in IMPORT_RE.finditer(text):
        for part in m.group(1).split(","):
            name = part.strip().split()[0]
            mods.add(name.split(".")[0])
    for m in FROM_RE.finditer(text):
        mods.add(m.group(1).split(".")[0])
    for m in HAVE_PY_RE.finditer(text):
        for part in m.group(1).split(","):
            if part.strip():
                mods.add(part.strip().split(".")[0])
    return mods


# a package's files used by path (pydicom's DICOM test files)
DIST_RE = re.compile(r"/usr/lib/python3/dist-packages/([A-Za-z_]\w*)")


SEP_RE = re.compile(r"\|\||&&|\$\(|[<>]\(|[|;&`\n]|(?:^|(?<=\s))\(|\bthen\b|\bdo\b|\belse\b")
SHELL_C_RE = re.compile(r"(?:^|[\s/])(?:sh|bash|dash)\s+(?:-[a-z]+\s+)*-c\s*$")


def unquote(text):
    """Shell text with quoted words blanked; the quoted scripts of `sh -c '...'` (bash, dash)
    are returned separately to be scanned as shell in their turn. Other quoted text (a python3 -c
    program, messages) is never in command position."""
    out, scripts, i, n = [], [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if (ch == '"' and text[j] == "\\") else 1
            body = text[i + 1:j]
            if SHELL_C_RE.search("".join(out)[-40:]):
                scripts.append(body.replace('\\"', '"') if ch == '"' else body)
            out.append(" _ ")
            i = j + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out), scripts


def command_words(shell_text):
    """Words in command position of a piece of shell text (heuristic: quoted words are arguments,
    except the script of `sh -c '...'`, which is scanned in its turn)."""
    words = []
    plain, scripts = unquote(shell_text)
    for sc in scripts:
        words += command_words(sc)
    for seg in SEP_RE.split(plain):
        toks = seg.strip().split()
        k = 0
        while k < len(toks):
            w = toks[k]
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w) or w in ("!", "exec", "command", "time",
                                                                       "if", "while", "until", "{",
                                                                       "nice", "env"):
                k += 1
                continue
            break
        if k < len(toks):
            w = toks[k]
            if w and not w.startswith(("$", "-", "%", "#", "_")):
                words.append(w)
    return words


def shell_functions(text):
    return set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\)\s*\{", text, re.M))


def balanced_args(text, i):
    """The text of a call's argument list starting at text[i] == '(' (strings respected)."""
    depth, j, n = 0, i, len(text)
    while j < n:
        ch = text[j]
        if ch == '"':
            j += 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
        j += 1
    return text[i + 1:]


def c_command_strings(text):
    """(line, shell text) of the string literals a C test hands to the shell: the arguments of
    system(), popen() and the tests' sh() helper, and the format of snprintf() into a buffer that
    the file passes to system() or popen()."""
    bufs = set(re.findall(r"\b(?:system|popen)\s*\(\s*([A-Za-z_]\w*)\s*[,)]", text))
    calls = [m for m in re.finditer(r"\b(?:system|popen|sh)\s*\(", text)]
    if bufs:
        calls += list(re.finditer(r"\bsnprintf\s*\(\s*(?:%s)\s*," % "|".join(map(re.escape, sorted(bufs))), text))
    out = []
    for m in calls:
        i = text.index("(", m.start())
        base = text.count("\n", 0, i)
        for ln, s in c_string_literals(balanced_args(text, i)):
            out.append((base + ln, s))
    return out


def scan_file(path):
    """(modules, programs): {name: first 'file:line'} for each."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    mods, progs = {}, {}
    ext = os.path.splitext(path)[1]

    def add(d, name, line):
        d.setdefault(name, "%s:%d" % (path, line))

    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    # Python imports: in any file (C strings included: decode the \n first)
    if ext in (".c", ".h", ".cpp"):
        for ln, s in c_string_literals(text):
            for mname in python_modules(s):
                add(mods, mname, ln)
        for m in HAVE_PY_RE.finditer(text):
            for part in m.group(1).split(","):
                if part.strip():
                    add(mods, part.strip().split(".")[0], line_of(m.start()))
    elif ext == ".py":
        for m in IMPORT_RE.finditer(text):
            for part in m.group(1).split(","):
                add(mods, part.strip().split()[0].split(".")[0], line_of(m.start()))
        for m in FROM_RE.finditer(text):
            add(mods, m.group(1).split(".")[0], line_of(m.start()))
    else:
        for m in list(IMPORT_RE.finditer(text)) + list(FROM_RE.finditer(text)):
            for mname in python_modules(m.group(0)):
                add(mods, mname, line_of(m.start()))

    for m in DIST_RE.finditer(text):
        add(mods, m.group(1), line_of(m.start()))

    # programs
    funcs = shell_functions(text)
    pieces = []  # (line, shell text)
    if ext in (".sh",):
        pieces = [(i + 1, l) for i, l in enumerate(text.split("\n")) if not l.lstrip().startswith("#")]
    elif ext in (".c", ".h", ".cpp"):
        pieces = c_command_strings(text)
    elif ext == ".cmake" or os.path.basename(path) == "CMakeLists.txt":
        for m in re.finditer(r"COMMAND\s+(.*?)(?=\)\s*$|\s(?:WORKING_DIRECTORY|DEPENDS|COMMENT)\b)",
                             text, re.S | re.M):
            pieces.append((line_of(m.start()), m.group(1)))
    for ln, s in pieces:
        for w in command_words(s):
            if w in SHELL_WORDS or w in funcs or "${" in w or "<" in w:
                continue
            if w.startswith("/"):
                if w.startswith(("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/")):
                    add(progs, os.path.basename(w), ln)
                continue
            if "/" in w or not re.fullmatch(r"[A-Za-z0-9_.+-]+", w):
                continue
            if shutil.which(w):
                add(progs, w, ln)
    return mods, progs


def scan(paths, own_modules):
    mods, progs = {}, {}
    for root in paths:
        files = []
        if os.path.isfile(root):
            files = [root]
        else:
            for d, sub, fs in os.walk(root):
                sub[:] = sorted(x for x in sub if x != "deps_fixture")  # deps_can_fail.sh's own
                for f in sorted(fs):
                    if f.endswith((".c", ".h", ".cpp", ".sh", ".py", ".cmake")) or f == "CMakeLists.txt":
                        files.append(os.path.join(d, f))
        for f in sorted(files):
            if os.path.abspath(f) == os.path.abspath(__file__):
                continue  # this checker's own text names modules and programs as examples
            m, p = scan_file(f)
            for k, v in m.items():
                mods.setdefault(k, v)
            for k, v in p.items():
                progs.setdefault(k, v)
    std = set(sys.stdlib_module_names) | {"__future__"}
    mods = {k: v for k, v in mods.items() if k not in std and k not in own_modules}
    return mods, progs


# ----------------------------------------------------------------------------- Debian packages


_owners = {}


def _aliases(path):
    cands = [path, os.path.realpath(path)]
    for c in list(cands):
        cands.append(c[4:] if c.startswith("/usr/") else "/usr" + c)
    return cands


def dpkg_owner(path, prefetch=()):
    """Debian package owning a file, or None (merged-/usr aliases tried). The files in prefetch
    are looked up in the same dpkg call (one call for all: dpkg -S costs 0.1 s each)."""
    cands = _aliases(path) if path else []
    todo = [c for p in ([path] if path else []) + list(prefetch) for c in _aliases(p) if c not in _owners]
    todo = list(dict.fromkeys(todo))
    if todo:
        out = subprocess.run(["dpkg", "-S"] + todo, capture_output=True, text=True)
        for c in todo:
            _owners[c] = None
        for l in out.stdout.splitlines():
            if l.startswith(("diversion", "local diversion")) or ": " not in l:
                continue
            pkgs, f = l.split(": ", 1)
            if f in _owners and _owners[f] is None:
                _owners[f] = pkgs.split(",")[0].split(":")[0].strip()
    for c in cands:
        if _owners.get(c):
            return _owners[c]
    return None


def module_package(name):
    """(installed, Debian package or None) of a Python module for this interpreter."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return False, None
    origin = spec.origin if spec.origin and spec.origin not in ("built-in", "frozen") else None
    if origin is None and spec.submodule_search_locations:
        origin = list(spec.submodule_search_locations)[0]
    return True, dpkg_owner(origin) if origin else None


def program_package(name):
    p = shutil.which(name) or (("/usr/bin/" + name) if os.access("/usr/bin/" + name, os.X_OK) else None)
    if not p:
        return False, None
    return True, dpkg_owner(p)


_essential = {}


def is_essential(pkg):
    if pkg not in _essential:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Essential}", pkg], capture_output=True, text=True)
        _essential[pkg] = out.returncode == 0 and out.stdout.strip() == "yes"
    return _essential[pkg]


def provided_by(declared, owner):
    """The declared package is the owner, or a package that depends on it (python3-h5py is the
    metapackage of python3-h5py-serial)."""
    if owner == declared:
        return True
    out = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", declared], capture_output=True, text=True)
    deps = {d.strip().split()[0] for alt in out.stdout.split(",") for d in alt.split("|") if d.strip()}
    return owner in deps


def installed(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


# ----------------------------------------------------------------------------- README


def readme_block(rows):
    def names(role, with_what):
        out = []
        for pkg, r, prov, doc in rows:
            if r != role:
                continue
            out.append("`%s` (%s)" % (pkg, doc) if with_what else "`%s`" % pkg)
        return ", ".join(out)

    lines = [
        README_BEGIN,
        "Build and demo: " + names("build", False) + ".",
        "",
        "Tests (installed by `make test` as well): " + names("test", True) + ".",
        "",
        "Optional, not installed by `make`: " + names("optional", True) + ".",
        README_END,
    ]
    return "\n".join(lines)


def check_readme(readme, rows, write):
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    a, b = text.find(README_BEGIN), text.find(README_END)
    if a < 0 or b < a:
        return ["%s: no generated dependency block (the lines '%s' ... '%s')" % (readme, README_BEGIN, README_END)]
    want = readme_block(rows)
    have = text[a:b + len(README_END)]
    if have == want:
        return []
    if write:
        tmp = readme + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text[:a] + want + text[b + len(README_END):])
        os.replace(tmp, readme)
        return []
    return ["%s: the dependency paragraph is not the one scripts/deps.list gives; run "
            "tests/deps_check.py --write-readme %s" % (readme, os.path.dirname(readme) or ".")]


# ----------------------------------------------------------------------------- main


def main(argv):
    args = list(argv)
    lst = readme = None
    scans, write = [], False
    src = None
    while args:
        a = args.pop(0)
        if a == "--list" and args:
            lst = args.pop(0)
        elif a == "--readme" and args:
            readme = args.pop(0)
        elif a == "--scan" and args:
            scans.append(args.pop(0))
        elif a == "--write-readme":
            write = True
        elif a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        elif a.startswith("-") or src is not None:
            print("deps_check.py: unexpected argument '%s' (see --help)" % a, file=sys.stderr)
            return 2
        else:
            src = a
    if src is None:
        print("deps_check.py: expected the source folder (see --help)", file=sys.stderr)
        return 2
    lst = lst or os.path.join(src, "scripts", "deps.list")
    readme = readme or os.path.join(src, "README.md")
    try:
        rows = parse_list(lst)
    except (OSError, ValueError) as e:
        print("FAIL: %s" % e)
        return 1
    problems = check_readme(readme, rows, write)
    if write:
        for p in problems:
            print("FAIL: " + p)
        return 1 if problems else 0

    if not scans:
        scans = [os.path.join(src, "tests")]
        shared = os.environ.get("MK_SHARED_DIR")
        if shared and os.path.isdir(os.path.join(shared, "toml-test")):
            scans.append(os.path.join(shared, "toml-test"))
    own = set()
    for root in scans:
        for d, _, fs in os.walk(root) if os.path.isdir(root) else []:
            own |= {f[:-3] for f in fs if f.endswith(".py")}
    mods, progs = scan(scans, own)

    declared_py = {it[3:]: pkg for pkg, _, prov, _ in rows for it in prov if it.startswith("py:")}
    declared_bin = {it[4:]: pkg for pkg, _, prov, _ in rows for it in prov if it.startswith("bin:")}
    declared_pkg = {pkg: role for pkg, role, _, _ in rows}

    paths = [shutil.which(n) or "/usr/bin/" + n for n in progs]
    dpkg_owner(None, paths)
    for name, where in sorted(mods.items()):
        ok, pkg = module_package(name)
        if name in declared_py:
            dp = declared_py[name]
            if ok and pkg and not provided_by(dp, pkg):
                problems.append("%s: Python module '%s' comes from Debian package %s, but %s declares it "
                                "in %s" % (where, name, pkg, lst, dp))
            elif declared_pkg.get(dp) == "optional":
                problems.append("%s: Python module '%s' is used by a test but its package %s is "
                                "optional in %s (make it role test)" % (where, name, dp, lst))
            continue
        if ok:
            problems.append("%s: Python module '%s' (Debian package %s) is not declared in %s: add "
                            "'%s | test | py:%s | ...'" % (where, name, pkg or "unknown: not from a Debian package",
                                                           lst, pkg or "python3-" + name.lower(), name))
        else:
            problems.append("%s: Python module '%s' is not installed and not declared in %s (its Debian "
                            "package is probably python3-%s)" % (where, name, lst, name.lower()))

    for name, where in sorted(progs.items()):
        ok, pkg = program_package(name)
        if name in declared_bin:
            dp = declared_bin[name]
            if ok and pkg and not provided_by(dp, pkg):
                problems.append("%s: program '%s' comes from Debian package %s, but %s declares it in %s"
                                % (where, name, pkg, lst, dp))
            continue
        if ok and pkg and is_essential(pkg):
            continue
        if ok:
            problems.append("%s: program '%s' (Debian package %s) is not declared in %s: add "
                            "'%s | test | bin:%s | ...'" % (where, name, pkg or "unknown", lst, pkg or "?", name))
        else:
            problems.append("%s: program '%s' is not installed and not declared in %s" % (where, name, lst))

    for pkg, role, _, _ in rows:
        if role in ("build", "test") and not installed(pkg):
            problems.append("%s: declared package %s is not installed: run 'make deps' (as root) or "
                            "'apt-get install %s'" % (lst, pkg, pkg))

    for p in problems:
        print("FAIL: " + p)
    print("deps_check: %d Python modules and %d programs used by the tests, %d packages declared, "
          "%d problems" % (len(mods), len(progs), len(rows), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
