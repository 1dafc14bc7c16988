#!/usr/bin/env python3
"""File-level import graph of the crate's Rust sources: fails on import cycles and,
with --layers, on a lower layer importing a higher one.

    python3 .ci/check_layers.py              # cycles; exit 1 when there is one
    python3 .ci/check_layers.py --layers     # cycles and the layer order below
    python3 .ci/check_layers.py --graph      # also print every edge and where it comes from
    python3 .ci/check_layers.py --self-test  # the parser's own tests

What counts as an import of file G by file F (Rust 2018 module layout):
- every path of a `use crate::...`, `use super::...` or `use self::...` (grouped
  `use crate::{a::b, c::{D, E}}` and multi-line forms included), and every
  `crate::x::y`, `$crate::x::y` or `super::x` path written inline in code;
- `crate::a::b::Item` names the file of the longest prefix that is a module:
  `src/a/b.rs` or `src/a/b/mod.rs`, else `src/a.rs` or `src/a/mod.rs`, else the crate
  root `src/lib.rs`;
- a path to a name a module only imports (`use`, `pub use` re-exports of the crate root
  included) is followed to the file the name comes from.
Ignored: comments and doc comments, string and char literals, items under
`#[cfg(test)]`, every `mod tests { ... }` block, `pub(in crate::...)` visibilities,
a file's imports of itself, and a parent's imports of the child modules it declares
with `mod x;`. Edges into the crate root and into re-export-only `mod.rs` files are
listed but never make a cycle.
"""

import os
import re
import sys
import tempfile

# The crates: source folders relative to the repository root, each with its `lib.rs`.
CRATES = ["src", "kernels/src"]

# The layer order for --layers: (path prefix relative to the repository root, rank).
# A file takes the rank of the longest prefix it starts with (files matching none are not
# checked); a file may import files of its own rank or lower, never higher. An entry is
# active only when some file starts with its prefix, and the check runs only when at
# least two ranks are active (that is, once the folders exist).
LAYERS = [
    ("src/model/", 0),
    ("src/engine/", 1),
    ("src/api/", 2),
    ("src/reference/", 3),
    ("src/lm/", 3),
    ("src/golden", 3),
    ("src/bench", 3),
]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
MAX_CYCLES = 500


# --------------------------------------------------------------------------------------
# Lexing: comments and literals blanked out, line breaks kept.


def strip_comments_and_literals(src):
    """`src` with every comment and string/char literal replaced by spaces (line breaks
    kept, so positions and line numbers stay valid). String literals become `""`."""
    out = []
    i, n = 0, len(src)

    def blank(s):
        return "".join(c if c == "\n" else " " for c in s)

    def ident_char(c):
        return c.isalnum() or c == "_"

    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(src[i:j]))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(src[i:j]))
            i = j
        elif c in "rb" and (i == 0 or not ident_char(src[i - 1])) and re.match(
            r'(?:br|rb|r)#*"', src[i:]
        ):
            m = re.match(r'(?:br|rb|r)(#*)"', src[i:])
            close = '"' + m.group(1)
            j = src.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            out.append('""' + blank(src[i + 2 : j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append('""' + blank(src[i + 2 : j]))
            i = j
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}', '\''), else a lifetime or label ('a).
            if nxt == "\\":
                j = i + 2
                while j < n and src[j] != "'":
                    j += 2 if src[j] == "\\" else 1
                j = min(j + 1, n)
                out.append(blank(src[i:j]))
                i = j
            elif i + 2 < n and src[i + 2] == "'" and nxt != "\n":
                out.append(blank(src[i : i + 3]))
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(code, open_at):
    """Index just past the `}` matching the `{` at `open_at`."""
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def item_end(code, start):
    """End of the item starting at `start`: past its `;` or its balanced `{...}` body
    (whichever comes first outside brackets)."""
    depth = 0
    for j in range(start, len(code)):
        c = code[j]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return j + 1
        elif c == "{" and depth == 0:
            return matching_brace(code, j)
    return len(code)


ATTR_RE = re.compile(r"#\s*\[")


def attribute_end(code, start):
    """Index past the `]` closing the attribute `#[` at `start`."""
    j = code.index("[", start)
    depth = 0
    for k in range(j, len(code)):
        if code[k] == "[":
            depth += 1
        elif code[k] == "]":
            depth -= 1
            if depth == 0:
                return k + 1
    return len(code)


def blank_range(code, a, b):
    return code[:a] + "".join(c if c == "\n" else " " for c in code[a:b]) + code[b:]


def strip_test_code(code):
    """Blanks out items under `#[cfg(test)]` and every `mod tests { ... }` block."""
    pos = 0
    while True:
        m = ATTR_RE.search(code, pos)
        if not m:
            break
        end = attribute_end(code, m.start())
        attr = re.sub(r"\s+", "", code[m.start() : end])
        if attr == "#[cfg(test)]":
            # Skip further attributes of the same item, then the item itself.
            k = end
            while True:
                mm = re.compile(r"\s*#\s*\[").match(code, k)
                if not mm:
                    break
                k = attribute_end(code, mm.start())
            stop = item_end(code, k)
            code = blank_range(code, m.start(), stop)
            pos = stop
        else:
            pos = end
    for m in list(re.finditer(r"(?<![A-Za-z0-9_])mod\s+tests\s*\{", code)):
        if code[m.start()] != "m":  # already blanked
            continue
        stop = matching_brace(code, m.end() - 1)
        code = blank_range(code, m.start(), stop)
    return code


# --------------------------------------------------------------------------------------
# Paths.


def parse_use_tree(text):
    """Every path a use tree names, as lists of segments (`self` inside a group
    becomes the group's own path; `as` renames and globs are dropped)."""
    toks = re.findall(r"::|\$?[A-Za-z_][A-Za-z0-9_]*|[{},*]", text)
    pos = 0

    def tree(prefix):
        nonlocal pos
        paths = []
        path = list(prefix)
        while pos < len(toks):
            t = toks[pos]
            if t == "::":
                pos += 1
            elif t == "{":
                pos += 1
                while pos < len(toks) and toks[pos] != "}":
                    if toks[pos] == ",":
                        pos += 1
                        continue
                    paths.extend(tree(path))
                pos += 1  # the `}`
                return paths
            elif t in ",}":
                break
            elif t == "*":
                pos += 1
                paths.append(list(path) + ["*"])
                return paths
            elif t == "as":
                pos += 2  # `as name`
                break
            elif t == "self" and path:
                pos += 1
            else:
                path.append(t)
                pos += 1
        if path != list(prefix) or not paths:
            paths.append(path)
        return paths

    result = []
    while pos < len(toks):
        if toks[pos] == ",":
            pos += 1
            continue
        before = pos
        result.extend(tree([]))
        if pos == before:
            pos += 1
    return [p for p in result if p]


USE_RE = re.compile(r"(?<![A-Za-z0-9_$])use\s")
INLINE_RE = re.compile(
    r"(?<![A-Za-z0-9_$:])(\$crate|crate|super)((?:\s*::\s*" + IDENT + r")+)"
)
VIS_IN_RE = re.compile(r"pub\s*\(\s*in\s+[^)]*\)")
MOD_DECL_RE = re.compile(r"(?<![A-Za-z0-9_])mod\s+(" + IDENT + r")\s*;")
MOD_BLOCK_RE = re.compile(r"(?<![A-Za-z0-9_])mod\s+(" + IDENT + r")\s*\{")


def use_statements(code):
    """`(start, end, tree_text)` of every `use ...;`."""
    out = []
    for m in USE_RE.finditer(code):
        end = code.find(";", m.end())
        if end < 0:
            continue
        out.append((m.start(), end + 1, code[m.end() : end]))
    return out


class SourceFile:
    def __init__(self, crate_dir, rel, text):
        self.crate_dir = crate_dir  # e.g. "src"
        self.rel = rel  # e.g. "src/lm/model.rs"
        inner = os.path.relpath(rel, crate_dir).replace(os.sep, "/")
        parts = inner[:-3].split("/")
        if parts[-1] in ("mod", "lib", "main") and (parts[-1] == "mod" or len(parts) == 1):
            parts = parts[:-1]
        self.module = tuple(parts)
        self.is_root = inner in ("lib.rs", "main.rs")
        self.is_mod_rs = inner.endswith("mod.rs")
        code = strip_test_code(strip_comments_and_literals(text))
        code = VIS_IN_RE.sub(lambda m: " " * len(m.group(0)), code)
        self.code = code
        self.line_starts = [0] + [i + 1 for i, c in enumerate(code) if c == "\n"]
        self.children = set(MOD_DECL_RE.findall(code))
        # Inline modules: (start, end, name); their items belong to this file.
        self.inline = []
        for m in MOD_BLOCK_RE.finditer(code):
            self.inline.append((m.end() - 1, matching_brace(code, m.end() - 1), m.group(1)))
        self.uses = use_statements(code)

    def line(self, pos):
        lo, hi = 0, len(self.line_starts)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid
        return lo + 1

    def module_at(self, pos):
        """The module path at `pos`, inline modules included."""
        path = list(self.module)
        for a, b, name in sorted(self.inline):
            if a < pos < b:
                path.append(name)
        return tuple(path)

    def inline_modules(self):
        """Module path of every inline module of the file."""
        return [self.module_at(a + 1) for a, _, _ in self.inline]

    def is_reexport_only(self):
        """Whether the file holds nothing but `mod` declarations and `use` lines."""
        code = self.code
        for a, b, _ in reversed(self.uses):
            code = code[:a] + code[b:]
        code = MOD_DECL_RE.sub(" ", code)
        code = re.sub(r"#\s*!?\s*\[[^\]]*\]", " ", code)
        code = re.sub(r"(?<![A-Za-z0-9_])pub(\s*\([^)]*\))?", " ", code)
        return code.strip() == ""

    def raw_paths(self):
        """`(pos, segments, text)` of every crate-relative path written in the file."""
        found = []
        spans = []
        for a, b, tree in self.uses:
            spans.append((a, b))
            shown = "use " + re.sub(r"\s+", " ", tree.strip()).replace("{ ", "{").replace(", }", "}")
            for p in parse_use_tree(tree):
                found.append((a, [s for s in p if s != "*"], shown))
        for m in INLINE_RE.finditer(self.code):
            if any(a <= m.start() < b for a, b in spans):
                continue
            segs = [m.group(1)] + re.findall(IDENT, m.group(2))
            found.append((m.start(), segs, "::".join(segs)))
        return found


class Crate:
    def __init__(self, crate_dir, files):
        self.dir = crate_dir
        self.files = files
        self.modules = {}  # module path -> file
        for f in files:
            self.modules.setdefault(f.module, f)
        for f in files:
            for path in f.inline_modules():
                self.modules.setdefault(path, f)
        self.root = self.modules.get(())
        self._imports = {}

    def absolute(self, f, pos, segs):
        """The crate-absolute path of `segs` written at `pos` of `f`, or None when it does
        not start at `crate`, `$crate`, `self` or `super`, or climbs above the root."""
        if not segs:
            return None
        here = list(f.module_at(pos))
        head, rest = segs[0], list(segs[1:])
        if head in ("crate", "$crate"):
            base = []
        elif head in ("self", "super"):
            base = here
            if head == "super":
                if not base:
                    return None
                base = base[:-1]
            while rest and rest[0] == "super":
                if not base:
                    return None
                base, rest = base[:-1], rest[1:]
            if rest and rest[0] == "self":
                rest = rest[1:]
        elif head in f.children or tuple(here + [head]) in self.modules:
            base = here  # 2018 relative path into a child module
            rest = list(segs)
        else:
            return None  # an external crate or a local name
        return base + rest

    def imports(self, f):
        """`name -> absolute path` of every crate path `f` brings into scope with `use`
        (`pub use` re-exports included): what `crate::m::Name` means when `m` only
        imports `Name`."""
        if f.rel in self._imports:
            return self._imports[f.rel]
        names = {}
        self._imports[f.rel] = names
        for a, _, tree in f.uses:
            renames = dict(re.findall(r"(" + IDENT + r")\s+as\s+(" + IDENT + r")", tree))
            for p in parse_use_tree(tree):
                if p[-1] == "*":
                    continue
                absolute = self.absolute(f, a, p)
                if not absolute:
                    continue
                names.setdefault(renames.get(p[-1], p[-1]), absolute)
        return names

    def resolve(self, absolute, depth=0):
        """The file a crate-absolute path names: the longest module prefix, where a name the
        module only imports (`use`, `pub use`) is followed to the file it comes from."""
        for k in range(len(absolute), -1, -1):
            f = self.modules.get(tuple(absolute[:k]))
            if f is None:
                continue
            rest = absolute[k:]
            if rest and depth < 8:
                target = self.imports(f).get(rest[0])
                if target is not None and target != absolute[: k + 1]:
                    return self.resolve(target + rest[1:], depth + 1)
            return f
        return None


class Graph:
    def __init__(self, root_dir, crate_dirs=CRATES):
        self.files = []
        self.crates = []
        for cd in crate_dirs:
            base = os.path.join(root_dir, cd)
            if not os.path.isdir(base):
                continue
            files = []
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames.sort()
                for fn in sorted(filenames):
                    if fn.endswith(".rs"):
                        full = os.path.join(dirpath, fn)
                        rel = os.path.relpath(full, root_dir).replace(os.sep, "/")
                        with open(full, encoding="utf-8") as fh:
                            files.append(SourceFile(cd, rel, fh.read()))
            self.crates.append(Crate(cd, files))
            self.files.extend(files)
        # edges[(src, dst)] = [evidence, ...]
        self.edges = {}
        self.ignored_into_roots = {}
        for crate in self.crates:
            for f in crate.files:
                for pos, segs, text in f.raw_paths():
                    absolute = crate.absolute(f, pos, segs)
                    if absolute is None:
                        continue
                    g = crate.resolve(absolute)
                    if g is None or g is f:
                        continue
                    if g.module[:-1] == f.module and g.module and g.module[-1] in f.children:
                        continue  # a parent's own child module
                    ev = "%s:%d %s" % (f.rel, f.line(pos), text)
                    if g.is_root or (g.is_mod_rs and g.is_reexport_only()):
                        evs = self.ignored_into_roots.setdefault((f.rel, g.rel), [])
                    else:
                        evs = self.edges.setdefault((f.rel, g.rel), [])
                    if ev not in evs:
                        evs.append(ev)

    def adjacency(self):
        adj = {f.rel: [] for f in self.files}
        for a, b in sorted(self.edges):
            adj[a].append(b)
        return adj

    def sccs(self):
        """Strongly connected components with more than one file (Tarjan)."""
        adj = self.adjacency()
        index, low, on, stack, out = {}, {}, set(), [], []
        counter = [0]
        sys.setrecursionlimit(10000)

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in adj[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        for v in sorted(adj):
            if v not in index:
                visit(v)
        return sorted(out)

    def cycles(self, limit=MAX_CYCLES):
        """Every elementary cycle (Johnson's algorithm, within each component), each
        starting at its smallest file; at most `limit`. Returns (cycles, truncated)."""
        adj = self.adjacency()
        found = []
        truncated = False
        for comp in self.sccs():
            nodes = sorted(comp)
            for i, start in enumerate(nodes):
                allowed = set(nodes[i:])
                blocked, bmap, path = set(), {}, []

                def unblock(v):
                    todo = [v]
                    while todo:
                        x = todo.pop()
                        if x in blocked:
                            blocked.discard(x)
                            todo.extend(bmap.pop(x, ()))

                def circuit(v):
                    nonlocal truncated
                    closed = False
                    path.append(v)
                    blocked.add(v)
                    for w in adj[v]:
                        if w not in allowed:
                            continue
                        if w == start:
                            if len(found) >= limit:
                                truncated = True
                            else:
                                found.append(list(path))
                            closed = True
                        elif w not in blocked and circuit(w):
                            closed = True
                    if closed:
                        unblock(v)
                    else:
                        for w in adj[v]:
                            if w in allowed:
                                bmap.setdefault(w, set()).add(v)
                    path.pop()
                    return closed

                circuit(start)
        found.sort(key=lambda c: (len(c), c))
        return found, truncated

    def layer_violations(self, layers=LAYERS):
        """(active entries, violations); violations are (src, dst, src rank, dst rank)."""
        def rank(rel):
            best = None
            for prefix, r in layers:
                if rel.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                    best = (prefix, r)
            return best

        active = [(p, r) for p, r in layers if any(f.rel.startswith(p) for f in self.files)]
        if len({r for _, r in active}) < 2:
            return active, None
        bad = []
        for (a, b), _ in sorted(self.edges.items()):
            ra, rb = rank(a), rank(b)
            if ra and rb and ra[1] < rb[1]:
                bad.append((a, b, ra[1], rb[1]))
        for (a, b), _ in sorted(self.ignored_into_roots.items()):
            ra, rb = rank(a), rank(b)
            if ra and rb and ra[1] < rb[1]:
                bad.append((a, b, ra[1], rb[1]))
        return active, bad


# --------------------------------------------------------------------------------------


def run(root, layers=False, graph=False, out=sys.stdout):
    g = Graph(root)
    status = 0
    if graph:
        for (a, b), evs in sorted(g.edges.items()):
            print("%s -> %s  (%s)" % (a, b, "; ".join(evs)), file=out)
        for (a, b), evs in sorted(g.ignored_into_roots.items()):
            print("%s -> %s  [into a root or re-export file, ignored] (%s)"
                  % (a, b, "; ".join(evs)), file=out)
    cycles, truncated = g.cycles()
    if cycles:
        status = 1
        for k, c in enumerate(cycles, 1):
            print("cycle %d: %s" % (k, " -> ".join(c + [c[0]])), file=out)
        if truncated:
            print("(more than %d cycles; the rest not listed)" % MAX_CYCLES, file=out)
        print("components:", file=out)
        for comp in g.sccs():
            print("  " + " ".join(comp), file=out)
        print("edges in cycles:", file=out)
        in_cycles = sorted({(c[i], c[(i + 1) % len(c)]) for c in cycles for i in range(len(c))})
        for a, b in in_cycles:
            print("  %s -> %s: %s" % (a, b, "; ".join(g.edges[(a, b)])), file=out)
    if layers:
        active, bad = g.layer_violations()
        if bad is None:
            print("layers: fewer than two layers exist yet (active: %s), not checked"
                  % (", ".join(p for p, _ in active) or "none"), file=out)
        elif bad:
            status = 1
            for a, b, ra, rb in bad:
                evs = g.edges.get((a, b)) or g.ignored_into_roots.get((a, b))
                print("layer violation: %s (layer %d) imports %s (layer %d): %s"
                      % (a, ra, b, rb, "; ".join(evs)), file=out)
        else:
            print("layers: %d prefixes checked, no violation" % len(active), file=out)
    summary = "%d files, %d edges" % (len(g.files), len(g.edges))
    if cycles:
        summary += ", %d cycle%s%s" % (len(cycles), "" if len(cycles) == 1 else "s",
                                      "+" if truncated else "")
    else:
        summary += ", no cycle"
    print(summary, file=out)
    return status


# --------------------------------------------------------------------------------------
# Self-tests.


def _tree(files):
    d = tempfile.mkdtemp(prefix="check_layers_")
    for rel, text in files.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(text)
    return d


def _edges(files, crates=("src",)):
    g = Graph(_tree(files), list(crates))
    return g, set(g.edges)


def self_test():
    failures = []

    def check(name, got, want):
        if got != want:
            failures.append("%s:\n    got  %r\n    want %r" % (name, got, want))

    # Use trees.
    check("simple", parse_use_tree("crate::a::B"), [["crate", "a", "B"]])
    check(
        "grouped, nested, self, as, glob",
        parse_use_tree("crate::{a::b, c::{self, D, E as F}, g::*}"),
        [["crate", "a", "b"], ["crate", "c"], ["crate", "c", "D"], ["crate", "c", "E"],
         ["crate", "g", "*"]],
    )
    check("multi-line", parse_use_tree("crate::{\n    a::b,\n    c,\n}"),
          [["crate", "a", "b"], ["crate", "c"]])
    check("super chain", parse_use_tree("super::super::x::Y"), [["super", "super", "x", "Y"]])

    # Comments and literals.
    stripped = strip_comments_and_literals(
        '// use crate::a;\n/// crate::b\n//! crate::c\n/* crate::d /* nested */ crate::e */\n'
        'let s = "crate::f \\" crate::g"; let r = r#"crate::h "# ; let c = \'"\';\n'
        "fn x<'a>(v: &'a str) { crate::i::j(); }\n"
    )
    check("comments and strings gone",
          re.findall(r"crate::(\w)", stripped), ["i"])
    check("lines kept", stripped.count("\n"), 6)

    base = {
        "src/lib.rs": "mod a;\nmod b;\nmod c;\npub mod d;\npub use a::Thing;\n"
                      "pub use c::{Other as Renamed};\n",
        "src/c.rs": "pub struct Other;\n",
    }

    # use forms, inline paths, tests ignored.
    g, e = _edges(dict(base, **{
        "src/a.rs": "use crate::{\n    b::X,\n    c::Y,\n};\npub struct Thing;\n"
                    "fn f() { crate::d::e::go(); }\n"
                    "#[cfg(test)]\nmod tests { use crate::c::Z; }\n",
        "src/b.rs": "// use crate::a::Thing;\nconst S: &str = \"crate::a\";\n"
                    "pub(crate) fn g() {}\npub(in crate::c) fn h() {}\n"
                    "mod tests {\n    fn t() { crate::a::f(); }\n}\n",
        "src/d/mod.rs": "pub mod e;\nuse self::e::go;\npub fn helper() {}\n",
        "src/d/e.rs": "use super::super::c::Y;\npub fn go() { super::helper(); }\n",
    }))
    check("edges", e, {("src/a.rs", "src/b.rs"), ("src/a.rs", "src/c.rs"),
                       ("src/a.rs", "src/d/e.rs"), ("src/d/e.rs", "src/c.rs"),
                       ("src/d/e.rs", "src/d/mod.rs")})
    check("no cycle", g.cycles()[0], [])

    # Cycles, re-exports followed, edges into the root ignored.
    g, e = _edges(dict(base, **{
        "src/a.rs": "use crate::b::X;\npub struct Thing;\n",
        "src/b.rs": "pub struct X;\nfn f() -> crate::Thing { todo!() }\n"
                    "fn g() -> crate::Renamed { todo!() }\nuse crate::Error;\n",
        "src/d/mod.rs": "",
    }))
    check("re-export followed", e, {("src/a.rs", "src/b.rs"), ("src/b.rs", "src/a.rs"),
                                    ("src/b.rs", "src/c.rs")})
    check("into the root", set(g.ignored_into_roots), {("src/b.rs", "src/lib.rs")})
    check("cycle", g.cycles()[0], [["src/a.rs", "src/b.rs"]])

    # A three-file cycle through a re-export-only mod.rs is not one; a real one is.
    g, e = _edges({
        "src/lib.rs": "mod m;\nmod p;\n",
        "src/m/mod.rs": "mod x;\nmod y;\npub use x::X;\npub use y::Y;\n",
        "src/m/x.rs": "use super::Y;\npub struct X;\n",
        "src/m/y.rs": "use crate::p::P;\npub struct Y;\n",
        "src/p.rs": "use crate::m::X;\npub struct P;\nfn f() { let _ = crate::m::x::X; }\n",
    })
    check("through re-export-only mod.rs", e,
          {("src/m/x.rs", "src/m/y.rs"), ("src/m/y.rs", "src/p.rs"), ("src/p.rs", "src/m/x.rs")})
    check("three-file cycle", g.cycles()[0], [["src/m/x.rs", "src/m/y.rs", "src/p.rs"]])

    # A parent mod.rs using its children is no edge; a child using its parent is.
    g, e = _edges({
        "src/lib.rs": "pub mod lm;\n",
        "src/lm/mod.rs": "pub mod model;\npub struct Config;\nuse model::M;\n"
                         "fn f() { self::model::go(); crate::lm::model::go(); }\n",
        "src/lm/model.rs": "use super::Config;\npub struct M;\npub fn go() {}\n",
    })
    check("parent to child ignored", e, {("src/lm/model.rs", "src/lm/mod.rs")})
    check("no cycle with parent", g.cycles()[0], [])

    # Inline modules, $crate in macros, cfg(test) items, char literals vs lifetimes.
    g, e = _edges({
        "src/lib.rs": "mod a;\nmod b;\npub mod inner { pub fn f() { super::b::g(); } }\n",
        "src/a.rs": "macro_rules! m { () => { $crate::b::g() } }\n"
                    "#[cfg(test)]\nuse crate::b::T;\n"
                    "#[cfg(test)]\n#[allow(dead_code)]\nfn t() { crate::b::g(); }\n"
                    "fn c() -> char { '{' }\nfn l<'a>(x: &'a u8) { crate::inner::f(); }\n",
        "src/b.rs": "pub fn g() {}\n",
    })
    check("inline module, $crate, cfg(test)", e,
          {("src/a.rs", "src/b.rs")})
    check("edge into the root's inline module", set(g.ignored_into_roots),
          {("src/a.rs", "src/lib.rs")})

    # Layers.
    old = list(LAYERS)
    LAYERS[:] = [("src/model/", 0), ("src/engine/", 1), ("src/api/", 2)]
    try:
        g, _ = _edges({
            "src/lib.rs": "mod model;\nmod engine;\n",
            "src/model/mod.rs": "mod w;\n",
            "src/model/w.rs": "use crate::engine::run::R;\n",
            "src/engine/mod.rs": "mod run;\n",
            "src/engine/run.rs": "use crate::model::w::W;\npub struct R;\n",
        })
        active, bad = g.layer_violations()
        check("layers active", [p for p, _ in active], ["src/model/", "src/engine/"])
        check("layer violation", bad, [("src/model/w.rs", "src/engine/run.rs", 0, 1)])
        g, _ = _edges({"src/lib.rs": "mod model;\n", "src/model/mod.rs": "pub struct A;\n"})
        check("layers inactive", g.layer_violations()[1], None)
    finally:
        LAYERS[:] = old

    # The exit status.
    import io
    buf = io.StringIO()
    d = _tree({"src/lib.rs": "mod a;\nmod b;\n", "src/a.rs": "use crate::b::B;\npub struct A;\n",
               "src/b.rs": "use crate::a::A;\npub struct B;\n"})
    check("status on a cycle", run(d, out=buf), 1)
    check("report", buf.getvalue().splitlines()[0], "cycle 1: src/a.rs -> src/b.rs -> src/a.rs")
    d = _tree({"src/lib.rs": "mod a;\nmod b;\n", "src/a.rs": "use crate::b::B;\npub struct A;\n",
               "src/b.rs": "pub struct B;\n"})
    buf = io.StringIO()
    check("status without", run(d, out=buf), 0)
    check("summary", buf.getvalue().strip(), "3 files, 1 edges, no cycle")

    if failures:
        print("self-test: %d failure(s)" % len(failures))
        for f in failures:
            print("  " + f)
        return 1
    print("self-test: all passed")
    return 0


def main(argv):
    args = argv[1:]
    unknown = [a for a in args if a not in ("--layers", "--graph", "--self-test", "-h", "--help")]
    if unknown or "-h" in args or "--help" in args:
        if unknown:
            print("check_layers: unknown argument(s) %s" % " ".join(unknown), file=sys.stderr)
        print(__doc__.strip(), file=sys.stderr if unknown else sys.stdout)
        return 2 if unknown else 0
    if "--self-test" in args:
        return self_test()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return run(root, layers="--layers" in args, graph="--graph" in args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
