"""Op specs and their canonical table keys.

Keys follow the published ProxylessNAS / once-for-all lookup-table format so tables move between
tools: ``expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0``.
Ops outside that format (the CIFAR op set) use the same ``name-field:value`` style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Op types whose key carries a kernel and stride field.
MBCONV = "expanded_conv"
STEM = "Conv"
FEATURE_MIX = "Conv_1"
LOGITS = "Logits"
SEP_CONV = "sep_conv"
DIL_CONV = "dil_conv"
AVG_POOL = "avg_pool"
MAX_POOL = "max_pool"
IDENTITY = "identity"
ZERO = "zero"

OP_TYPES = (MBCONV, STEM, FEATURE_MIX, LOGITS, SEP_CONV, DIL_CONV, AVG_POOL, MAX_POOL, IDENTITY, ZERO)
KERNELS = (3, 5, 7)
STRIDES = (1, 2)


class SpecError(ValueError):
    """An op spec or key that cannot be built or measured; the message names the field."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """Bounds on what a device will agree to build; the defaults keep one benchmark well under 1 GiB."""

    max_channels: int = 4096
    max_resolution: int = 1024
    max_batch: int = 256
    max_activation_mb: float = 512.0


DEFAULT_LIMITS = Limits()


def out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class OpSpec:
    """One candidate op at one input shape. Batch size belongs to the table, not the spec."""

    type: str
    h: int
    w: int
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    expand: int = 1
    dilation: int = 1
    idskip: bool = False

    @property
    def out_h(self) -> int:
        return out_size(self.h, self.stride)

    @property
    def out_w(self) -> int:
        return out_size(self.w, self.stride)

    @property
    def mid(self) -> int:
        return round(self.cin * self.expand) if self.type == MBCONV else self.cin

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.cin, self.h, self.w)

    def output_shape(self, batch: int = 1) -> tuple[int, ...]:
        if self.type == LOGITS:
            return (batch, self.cout)
        return (batch, self.cout, self.out_h, self.out_w)

    @property
    def key(self) -> str:
        return format_key(self)

    def activation_mb(self, batch: int = 1) -> float:
        """Largest live activation set of a forward pass, float32, in MiB (input + widest + output)."""
        widest = max(self.cin, self.mid, self.cout) * self.h * self.w
        total = self.cin * self.h * self.w + widest + self.cout * self.out_h * self.out_w
        return batch * total * 4 / 2**20


def _shape(h: int, w: int, c: int) -> str:
    return f"{h}x{w}x{c}"


def format_key(spec: OpSpec) -> str:
    io = f"input:{_shape(spec.h, spec.w, spec.cin)}"
    if spec.type == LOGITS:
        return f"{LOGITS}-{io}-output:{spec.cout}"
    io += f"-output:{_shape(spec.out_h, spec.out_w, spec.cout)}"
    if spec.type in (STEM, FEATURE_MIX, IDENTITY, ZERO):
        return f"{spec.type}-{io}"
    if spec.type == MBCONV:
        return (f"{MBCONV}-{io}-expand:{spec.expand}-kernel:{spec.kernel}"
                f"-stride:{spec.stride}-idskip:{int(spec.idskip)}")
    key = f"{spec.type}-{io}-kernel:{spec.kernel}-stride:{spec.stride}"
    if spec.type == DIL_CONV:
        key += f"-dilation:{spec.dilation}"
    return key


# At most 9 digits a dimension: a 5000-digit one is not a shape (and int() refuses over 4300 digits).
_SHAPE_RE = re.compile(r"^(\d{1,9})x(\d{1,9})x(\d{1,9})$")


def _parse_shape(text: str, field: str) -> tuple[int, int, int]:
    m = _SHAPE_RE.match(text)
    if not m:
        raise SpecError(field, f"expected HxWxC, got {text[:60]!r}")
    return int(m[1]), int(m[2]), int(m[3])


def _int_field(fields: dict[str, str], name: str) -> int:
    if name not in fields:
        raise SpecError(name, "missing from key")
    value = fields[name]
    if len(value) > 9 or not (value.isascii() and value.isdigit()):
        raise SpecError(name, f"expected an integer of at most 9 digits, got {value[:60]!r}")
    return int(value)


def _stride_from_sizes(h: int, oh: int) -> int:
    for s in STRIDES:
        if out_size(h, s) == oh:
            return s
    raise SpecError("output", f"{oh} is not the output size of {h} at stride 1 or 2")


_FIELDS = {
    MBCONV: {"input", "output", "expand", "kernel", "stride", "idskip"},
    STEM: {"input", "output"},
    FEATURE_MIX: {"input", "output"},
    LOGITS: {"input", "output"},
    IDENTITY: {"input", "output"},
    ZERO: {"input", "output"},
    SEP_CONV: {"input", "output", "kernel", "stride"},
    AVG_POOL: {"input", "output", "kernel", "stride"},
    MAX_POOL: {"input", "output", "kernel", "stride"},
    DIL_CONV: {"input", "output", "kernel", "stride", "dilation"},
}


def parse_key(key: str, limits: Limits = DEFAULT_LIMITS) -> OpSpec:
    """Key -> validated spec. Raises SpecError naming the offending field."""
    if not isinstance(key, str) or not key:
        raise SpecError("key", "empty key")
    op_type, *parts = key.split("-")
    if op_type not in _FIELDS:
        raise SpecError("type", f"unknown op type {op_type!r}; known: {', '.join(OP_TYPES)}")
    fields: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition(":")
        if not sep or not value:
            raise SpecError("key", f"malformed part {part!r} (expected name:value)")
        if name in fields:
            raise SpecError(name, "given twice")
        fields[name] = value
    expected = _FIELDS[op_type]
    if set(fields) != expected:
        extra, missing = set(fields) - expected, expected - set(fields)
        detail = "; ".join(filter(None, [
            f"unexpected {sorted(extra)}" if extra else "",
            f"missing {sorted(missing)}" if missing else "",
        ]))
        raise SpecError("key", f"{op_type} key fields wrong: {detail}")
    h, w, cin = _parse_shape(fields["input"], "input")
    if op_type == LOGITS:
        cout = _int_field(fields, "output")
        spec = OpSpec(LOGITS, h, w, cin, cout)
        validate(spec, limits)
        if format_key(spec) != key:
            raise SpecError("key", f"not canonical; expected {format_key(spec)!r}")
        return spec
    oh, ow, cout = _parse_shape(fields["output"], "output")
    kw: dict = {}
    if op_type == MBCONV:
        kw = dict(expand=_int_field(fields, "expand"), kernel=_int_field(fields, "kernel"),
                  stride=_int_field(fields, "stride"), idskip=bool(_int_field(fields, "idskip")))
    elif op_type in (SEP_CONV, AVG_POOL, MAX_POOL, DIL_CONV):
        kw = dict(kernel=_int_field(fields, "kernel"), stride=_int_field(fields, "stride"))
        if op_type == DIL_CONV:
            kw["dilation"] = _int_field(fields, "dilation")
    elif op_type == STEM:
        kw = dict(kernel=3, stride=_stride_from_sizes(h, oh))
    elif op_type == FEATURE_MIX:
        kw = dict(kernel=1, stride=_stride_from_sizes(h, oh))
    spec = OpSpec(op_type, h, w, cin, cout, **kw)
    validate(spec, limits)
    if (spec.out_h, spec.out_w) != (oh, ow):
        raise SpecError("output", f"{oh}x{ow} does not follow from input {h}x{w} at stride "
                                  f"{spec.stride} (expected {spec.out_h}x{spec.out_w})")
    canonical = format_key(spec)
    if canonical != key:
        raise SpecError("key", f"not canonical; expected {canonical!r}")
    return spec


def validate(spec: OpSpec, limits: Limits = DEFAULT_LIMITS, batch: int = 1) -> OpSpec:
    """Reject specs that cannot be built or that would exhaust the device's memory."""
    if spec.type not in OP_TYPES:
        raise SpecError("type", f"unknown op type {spec.type!r}; known: {', '.join(OP_TYPES)}")
    for name, value in (("input height", spec.h), ("input width", spec.w)):
        if not 1 <= value <= limits.max_resolution:
            raise SpecError(name, f"{value} outside 1..{limits.max_resolution}")
    for name, value in (("input channels", spec.cin), ("output channels", spec.cout)):
        if not 1 <= value <= limits.max_channels:
            raise SpecError(name, f"{value} outside 1..{limits.max_channels}")
    if not 1 <= batch <= limits.max_batch:
        raise SpecError("batch", f"{batch} outside 1..{limits.max_batch}")
    if spec.stride not in STRIDES:
        raise SpecError("stride", f"{spec.stride} is not 1 or 2")
    if spec.type in (MBCONV, SEP_CONV, DIL_CONV, AVG_POOL, MAX_POOL) and spec.kernel not in KERNELS:
        raise SpecError("kernel", f"{spec.kernel} is not one of 3, 5, 7")
    if spec.type == MBCONV:
        if not 1 <= spec.expand <= 8:
            raise SpecError("expand", f"{spec.expand} outside 1..8")
        if spec.idskip and (spec.stride != 1 or spec.cin != spec.cout):
            raise SpecError("idskip", "an identity shortcut needs stride 1 and equal in/out channels")
        if spec.mid > limits.max_channels:
            raise SpecError("expand", f"expanded width {spec.mid} over {limits.max_channels}")
    if spec.type == DIL_CONV and spec.dilation not in (1, 2, 3):
        raise SpecError("dilation", f"{spec.dilation} is not 1, 2 or 3")
    if spec.type in (AVG_POOL, MAX_POOL, IDENTITY, ZERO) and spec.cin != spec.cout:
        raise SpecError("output channels", f"{spec.type} keeps channels: {spec.cout} != {spec.cin}")
    if spec.type == IDENTITY and spec.stride != 1:
        raise SpecError("stride", "identity has stride 1")
    mb = spec.activation_mb(batch)
    if mb > limits.max_activation_mb:
        raise SpecError("memory", f"activations of {mb:.0f} MiB at batch {batch} exceed the cap of "
                                  f"{limits.max_activation_mb:.0f} MiB")
    return spec
