"""A griffe extension for the API reference: nprnn's docstrings, written in reStructuredText
style (``code``, :class:`roles`, ``::`` literal blocks, notebook-style ``name -- text``
argument lists), rendered as the Markdown that mkdocstrings expects.

- ``:class:`~nprnn.LSTM``` and the other roles become cross-references (autorefs), so a
  reference to a name that is not in the reference fails ``mkdocs build --strict``; a role
  naming a private helper (a module the reference does not render) becomes plain code.
- ``text::`` + an indented block, an indented block under a line (a definition list) and
  ``>>>`` examples become fenced code blocks; indented ``*``/``-`` items become a list.
- A method that overrides a documented one without a docstring of its own gets the
  overridden method's docstring (as ``inspect.getdoc`` does).

Used from ``mkdocs.yml`` (``extensions: [docs/rst_docstrings.py:RstDocstrings]``); the
option ``public`` lists the modules the reference renders.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(class|func|mod|data|meth|attr|exc|obj):`(~?)([^`]+?)`")
ARG = re.compile(r"^(\w+) -- (.*)$")  # the notebook's "name -- description"
ITEM = re.compile(r"^([*-]) ")
FENCE = "```"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


class RstDocstrings(griffe.Extension):
    def __init__(self, public: list[str] | None = None) -> None:
        super().__init__()
        self.public = tuple(public or ())

    # ------------------------------------------------------------------ traversal
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._walk(pkg)

    def _walk(self, obj) -> None:
        for member in list(obj.members.values()):
            if member.is_alias:
                continue
            if member.is_class:
                self._inherit(member)
            if member.is_module or member.is_class:
                self._walk(member)
            self._convert(member)
        self._convert(obj)

    def _inherit(self, cls) -> None:
        for name, member in cls.members.items():
            if member.is_alias or member.docstring is not None or name.startswith("_"):
                continue
            for base in cls.mro():
                other = base.members.get(name)
                if other is not None and not other.is_alias and other.docstring is not None:
                    member.docstring = griffe.Docstring(
                        other.docstring.value, parent=member, lineno=other.docstring.lineno
                    )
                    break

    # ------------------------------------------------------------------ roles
    def _documented(self, obj) -> bool:
        """Whether the reference renders ``obj`` (an object or an alias) under its path:
        public, in a rendered module."""
        chain = [obj]
        while not chain[-1].is_module:
            chain.append(chain[-1].parent)
        if chain[-1].path not in self.public:
            return False
        return all(o.is_public for o in chain[:-1])

    def _resolve(self, obj, target: str) -> str | None:
        """The rendered path of what ``target`` names, seen from ``obj`` (absolute, or
        relative to ``obj`` and then to each enclosing scope): the object itself or an
        alias of it that the reference renders; None if there is none."""
        scope = obj if (obj.is_module or obj.is_class) else obj.parent
        parts = target.split(".")
        absolute = parts[0] == "nprnn"
        if absolute:
            scope, parts = obj.modules_collection["nprnn"], parts[1:]
        while scope is not None:
            found, aliases = scope, []
            try:
                for part in parts:
                    found = found.members[part]
                    while found.is_alias:
                        aliases.append(found)
                        found = found.target
            except (KeyError, griffe.AliasResolutionError):
                found = None
            if found is not None:
                for candidate in [found, *reversed(aliases)]:
                    if self._documented(candidate):
                        return candidate.path
                return None
            if absolute:
                return None
            scope = scope.parent
        return None

    def _role(self, obj, m: re.Match) -> str:
        tilde, target = m.group(2), m.group(3).strip().removesuffix("()")
        label = target.rsplit(".", 1)[-1] if tilde else target
        if m.group(1) in ("func", "meth"):
            label += "()"
        path = self._resolve(obj, target)
        return f"`{label}`" if path is None else f"[`{label}`][{path}]"

    # ------------------------------------------------------------------ blocks
    def _convert(self, obj) -> None:
        if obj.docstring is None or getattr(obj.docstring, "_nprnn_md", False):
            return
        text = ROLE.sub(lambda m: self._role(obj, m), obj.docstring.value)
        obj.docstring.value = "\n".join(self._blocks(text.splitlines()))
        obj.docstring._nprnn_md = True

    def _blocks(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i, n = 0, len(lines)
        in_list = False
        while i < n:
            line = lines[i]
            stripped = line.strip()
            if not stripped:
                out.append("")
                i += 1
                continue
            if stripped.startswith(">>>"):  # a doctest: up to the next blank line
                j = i
                while j < n and lines[j].strip():
                    j += 1
                out += ["", FENCE + "pycon", *[s.strip() for s in lines[i:j]], FENCE, ""]
                i, in_list = j, False
                continue
            if stripped in ("Arguments:", "Returns:") or (
                stripped.endswith(":") and i + 1 < n and ARG.match(lines[i + 1].strip())
            ):
                out += ["", f"**{stripped[:-1]}**", ""]
                i += 1
                while i < n and lines[i].strip():
                    m = ARG.match(lines[i].strip())
                    if m:
                        out.append(f"- `{m.group(1)}` — {m.group(2)}")
                    else:
                        out.append("  " + lines[i].strip())
                    i += 1
                out.append("")
                in_list = False
                continue
            literal = stripped.endswith("::")
            if literal:
                head = line.rstrip()[:-2].rstrip()
                line = head + ":" if head.strip() else ""
            out_line = line
            if _indent(line) == 0 and ITEM.match(stripped):
                if out and out[-1] and not in_list:
                    out.append("")
                in_list = True
            elif _indent(line) == 0 and out and not out[-1]:
                in_list = False
            out.append(out_line)
            i += 1
            # what follows: an indented block (literal, definition list or list items)
            j = i
            while j < n and not lines[j].strip() and literal:
                j += 1
            k = j
            while k < n and (not lines[k].strip() or _indent(lines[k]) > 0):
                k += 1
            while k > j and not lines[k - 1].strip():
                k -= 1
            block = lines[j:k]
            if not block or (in_list and not literal) or (_indent(line) > 0 and not literal):
                continue  # inside a list, or a line of an indented block: nothing to open
            if not literal and i < n and not lines[i].strip():
                continue  # an indented block after a blank line: Markdown's own business
            base = min(_indent(s) for s in block if s.strip())
            dedented = [s[base:] if s.strip() else "" for s in block]
            if not literal and all(ITEM.match(s) or _indent(s) > 0 or not s for s in dedented):
                out.append("")
                out += dedented
                out.append("")
            else:
                out += ["", FENCE + "text", *dedented, FENCE, ""]
            i = k
        return out


def _selftest() -> None:  # pragma: no cover - run by hand while editing
    doc = "A thing::\n\n    x = 1\n\nShapes:\n  x (T, B)\n  y (B,)\n- a\n  b\n- c"
    print("\n".join(RstDocstrings()._blocks(doc.splitlines())))


if __name__ == "__main__":  # pragma: no cover
    _selftest()
