"""Just enough of Go's text/template parser to compute what ollama reads from a model's TEMPLATE.

ollama looks at a template's identifiers (``Template.Vars`` and ``Identifiers`` in template/template.go: ``tools`` →
tools, ``suffix`` → insert) and at the text around ``.Thinking`` inside a ``range .Messages`` (``InferTags`` in
thinking/template.go: both tags found → thinking). This module builds the same node tree as text/template/parse for
that purpose: text (with ``{{-``/``-}}`` trimming), actions, if/range/with with else chains, define/block/template,
pipelines with fields, variables and parenthesised pipelines. Anything it cannot parse raises :class:`TemplateError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias


class TemplateError(ValueError):
    pass


@dataclass
class Text:
    text: str


@dataclass
class FieldRef:
    """``.A.B`` (a FieldNode) or ``$x.A`` (a VariableNode, ``variable=True``)."""

    idents: list[str]
    variable: bool = False


@dataclass
class Other:
    """A leaf ollama does not look into: dot, strings, numbers, function names, chains, break/continue."""


@dataclass
class Pipe:
    commands: list[list[Node]] = field(default_factory=list)


@dataclass
class Action:
    pipe: Pipe


@dataclass
class Branch:
    kind: str  # if | range | with
    pipe: Pipe
    body: ListNode
    else_: ListNode | None = None


@dataclass
class TemplateCall:
    name: str
    pipe: Pipe | None


@dataclass
class ListNode:
    nodes: list[Node] = field(default_factory=list)


Node: TypeAlias = Text | FieldRef | Other | Pipe | Action | Branch | TemplateCall | ListNode

_ACTION_RE = re.compile(r"\{\{(-[ \t\r\n])?")
_TOKEN_RE = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`|'(?:[^'\\]|\\.)+')
  | (?P<decl>:=|=)
  | (?P<punct>[(),|])
  | (?P<var>\$[\w]*(?:\.[\w]+)*)
  | (?P<field>(?:\.[A-Za-z_]\w*)+)
  | (?P<dot>\.)
  | (?P<word>[^\s(),|"`'=:]+)
)""",
    re.VERBOSE,
)


@dataclass
class Parsed:
    """The main template's tree and every ``define``d or ``block`` template."""

    root: ListNode
    defined: dict[str, ListNode]
    raw: str

    def trees(self) -> list[ListNode]:
        return [self.root, *self.defined.values()]


def _split(text: str) -> list[tuple[str, str]]:
    """Text and action items, with trim markers applied as Go's lexer does (empty text after trimming dropped)."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    while True:
        match = _ACTION_RE.search(text, pos)
        chunk = text[pos : match.start() if match else len(text)]
        if trim_next:
            chunk = chunk.lstrip(" \t\r\n")
        if match and match.group(1):
            chunk = chunk.rstrip(" \t\r\n")
        if chunk:
            items.append(("text", chunk))
        if not match:
            return items
        body_start = match.end()
        end, i = -1, body_start
        while i < len(text):
            if text.startswith("/*", i):
                close = text.find("*/", i + 2)
                if close < 0:
                    raise TemplateError("unclosed comment")
                i = close + 2
            elif text[i] in "\"`'":
                i = _string_end(text, i)
                if i < 0:
                    raise TemplateError("unterminated quoted string in action")
            elif text.startswith("}}", i):
                end = i
                break
            else:
                i += 1
        if end < 0:
            raise TemplateError("unclosed action")
        body = text[body_start:end]
        trim_next = body.endswith((" -", "\t-", "\n-", "\r-"))
        if trim_next:
            body = body[:-2]
        if not body.strip().startswith("/*"):
            items.append(("action", body.strip()))
        pos = end + 2


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        if text[i] == "\n" and quote != "`":
            return -1
        i += 1
    return -1


def _tokens(body: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(body, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"cannot read action {body!r}")
        kind = match.lastgroup or "word"
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _pipe(tokens: list[tuple[str, str]]) -> Pipe:
    """A pipeline's commands; declarations (``$x :=``) are dropped, as ollama's Identifiers skips them."""
    if any(kind == "decl" for kind, _ in tokens):
        at = next(i for i, (kind, _) in enumerate(tokens) if kind == "decl")
        tokens = tokens[at + 1 :]
    pipe = Pipe()
    command: list[Node] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "punct" and value == "|":
            pipe.commands.append(command)
            command = []
        elif kind == "punct" and value == "(":
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += {"(": 1, ")": -1}.get(tokens[j][1], 0) if tokens[j][0] == "punct" else 0
                j += 1
            if depth:
                raise TemplateError("unbalanced parentheses")
            inner = _pipe(tokens[i + 1 : j - 1])
            if j < len(tokens) and tokens[j][0] == "field":  # (x).Field is a chain: not looked into
                command.append(Other())
                j += 1
            else:
                command.append(inner)
            i = j
            continue
        elif kind == "field":
            command.append(FieldRef(value[1:].split(".")))
        elif kind == "var":
            command.append(FieldRef(value.split("."), variable=True))
        elif kind == "punct" and value in "),":
            raise TemplateError(f"unexpected {value!r}")
        else:
            command.append(Other())
        i += 1
    pipe.commands.append(command)
    return pipe


def parse(text: str) -> Parsed:
    items = _split(text)
    defined: dict[str, ListNode] = {}
    pos = 0

    def parse_list(stop: tuple[str, ...]) -> tuple[ListNode, str]:
        """Nodes up to an action whose keyword is in ``stop``; returns that action's body."""
        nonlocal pos
        out = ListNode()
        while pos < len(items):
            kind, value = items[pos]
            pos += 1
            if kind == "text":
                out.nodes.append(Text(value))
                continue
            word = value.split(None, 1)[0] if value else ""
            rest = value[len(word) :].strip()
            if word in stop:
                return out, value
            if word in ("end", "else"):
                raise TemplateError(f"unexpected {{{{{word}}}}}")
            if word in ("if", "range", "with"):
                out.nodes.append(branch(word, rest))
            elif word in ("define", "block"):
                name_tokens = _tokens(rest)
                if not name_tokens or name_tokens[0][0] != "string":
                    raise TemplateError(f"{word} without a name")
                name = name_tokens[0][1][1:-1]
                body, _ = parse_list(("end",))
                defined[name] = body
                if word == "block":
                    out.nodes.append(TemplateCall(name, _pipe(name_tokens[1:])))
            elif word == "template":
                name_tokens = _tokens(rest)
                if not name_tokens or name_tokens[0][0] != "string":
                    raise TemplateError("template without a name")
                pipe = _pipe(name_tokens[1:]) if len(name_tokens) > 1 else None
                out.nodes.append(TemplateCall(name_tokens[0][1][1:-1], pipe))
            elif word in ("break", "continue"):
                out.nodes.append(Other())
            else:
                out.nodes.append(Action(_pipe(_tokens(value))))
        if stop:
            raise TemplateError("missing {{end}}")
        return out, ""

    def branch(kind: str, rest: str) -> Branch:
        node = Branch(kind, _pipe(_tokens(rest)), ListNode())
        node.body, closing = parse_list(("end", "else"))
        if closing.split(None, 1)[0] == "else":
            chained = closing[4:].strip()
            if chained:
                word = chained.split(None, 1)[0]
                if word not in ("if", "with"):
                    raise TemplateError(f"else {word} is not allowed")
                node.else_ = ListNode([branch(word, chained[len(word) :].strip())])
            else:
                node.else_, _ = parse_list(("end",))
        return node

    root, _ = parse_list(())
    return Parsed(root, defined, text)


def _identifiers(node: Node | None) -> list[str]:
    """ollama's template.Identifiers: fields and variables of every action, branch and template call."""
    if node is None:
        return []
    if isinstance(node, ListNode):
        return [name for child in node.nodes for name in _identifiers(child)]
    if isinstance(node, TemplateCall):
        if node.pipe is None:
            raise TemplateError("undefined template specified")
        return _identifiers(node.pipe)
    if isinstance(node, Action):
        return _identifiers(node.pipe)
    if isinstance(node, Branch):
        return _identifiers(node.pipe) + _identifiers(node.body) + _identifiers(node.else_)
    if isinstance(node, Pipe):
        return [name for command in node.commands for arg in command for name in _identifiers(arg)]
    if isinstance(node, FieldRef):
        return list(node.idents)
    return []


def variables(parsed: Parsed) -> set[str]:
    """``Template.Vars()``: every identifier of every template, lower-cased."""
    return {name.lower() for tree in parsed.trees() for name in _identifiers(tree)}


def _visit(node: Node | None, enter: Callable[[Node, list[Node]], None], ancestors: list[Node]) -> None:
    """thinking.templateVisit: pipes before bodies, children in order; ancestors include the node itself."""
    if node is None:
        return
    ancestors.append(node)
    enter(node, ancestors)
    children: list[Node | None] = []
    if isinstance(node, ListNode):
        children = list(node.nodes)
    elif isinstance(node, Branch):
        children = [node.pipe, node.body, node.else_]
    elif isinstance(node, Action | TemplateCall):
        children = [node.pipe]
    elif isinstance(node, Pipe):
        children = [arg for command in node.commands for arg in command]
    for child in children:
        _visit(child, enter, ancestors)
    ancestors.pop()


def _uses_field(pipe: Pipe, name: str) -> bool:
    found = False

    def enter(node: Node, _: list[Node]) -> None:
        nonlocal found
        if isinstance(node, FieldRef) and not node.variable and node.idents and node.idents[0] == name:
            found = True

    _visit(pipe, enter, [])
    return found


def thinking_tags(parsed: Parsed) -> tuple[str, str]:
    """thinking.InferTags: the trimmed first and last text of the list around ``.Thinking`` in a range over
    ``.Messages`` (the last such reference wins)."""
    opening = closing = ""

    def enter(node: Node, ancestors: list[Node]) -> None:
        nonlocal opening, closing
        if not (isinstance(node, FieldRef) and not node.variable and node.idents and node.idents[0] == "Thinking"):
            return
        ranges = [a for a in ancestors if isinstance(a, Branch) and a.kind == "range"]
        if not ranges or not _uses_field(ranges[-1].pipe, "Messages"):
            return
        lists = [a for a in ancestors if isinstance(a, ListNode)]
        if lists and lists[-1].nodes:
            first, last = lists[-1].nodes[0], lists[-1].nodes[-1]
            if isinstance(first, Text):
                opening = first.text.strip()
            if isinstance(last, Text):
                closing = last.text.strip()

    _visit(parsed.root, enter, [])
    return opening, closing
