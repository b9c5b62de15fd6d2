"""The jax sharding objects Flax keeps in variable metadata, as data.

Flax puts a ``jax.sharding.Mesh`` (``with_partitioning(..., mesh=mesh)``),
an ``AbstractMesh`` or a ``PartitionSpec`` (``out_sharding=P(None, 'model')``)
into a variable's metadata. They are descriptions, so they are stored as
plain metadata maps whose first key is ``"__jax__"`` (naming the kind) and
read back as the jax object:

- ``Mesh``: ``axis_names``, ``axis_sizes``, ``axis_types`` (the names of the
  ``AxisType`` members), ``device_ids`` (in the mesh's order), ``platform``
  and ``device_kind``. Read back as the Mesh over the devices of those ids
  (jax keeps one Mesh object per description, so in the same process it is
  the very Mesh); where those devices do not exist (another machine), as the
  ``AbstractMesh`` of the same axes.
- ``AbstractMesh``: the same without the devices.
- ``PartitionSpec``: ``parts`` (a tuple of None, axis names and tuples of
  axis names; ``{"__jax__": "UNCONSTRAINED"}`` for ``P.UNCONSTRAINED``),
  and ``unreduced`` / ``reduced`` (sorted axis names) when not empty.

C, C++ and checkpoint readers see the maps. Without jax, the map itself is
given back. A metadata dict of the caller's own cannot start with the key
``"__jax__"``.
"""

from __future__ import annotations

import sys

MARK = "__jax__"


def _names(value, what: str) -> tuple:
    names = tuple(value)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what}: axis names must be str to be stored, got {names!r}")
    return names


def _part(part, jax):
    if part is None or isinstance(part, str):
        return part
    if part is jax.sharding.PartitionSpec.UNCONSTRAINED:
        return {MARK: "UNCONSTRAINED"}
    if isinstance(part, tuple):
        return _names(part, "PartitionSpec")
    raise TypeError(f"PartitionSpec: cannot store the part {part!r}")


def encode(value) -> dict | None:
    """The metadata map standing for ``value``, or None when ``value`` is not
    one of the jax objects stored this way. Never imports jax: a jax object
    exists only once jax is imported."""
    jax = sys.modules.get("jax")
    if jax is None or not type(value).__module__.startswith("jax"):
        return None
    sharding = jax.sharding
    if isinstance(value, sharding.PartitionSpec):
        parts = getattr(value, "partitions", None)
        if parts is None:  # pragma: no cover - jax before PartitionSpec.partitions
            parts = tuple(value)
        out = {MARK: "PartitionSpec", "parts": tuple(_part(p, jax) for p in parts)}
        for name in ("unreduced", "reduced"):
            axes = getattr(value, name, None)
            if axes:
                out[name] = tuple(sorted(_names(axes, "PartitionSpec")))
        return out
    if isinstance(value, sharding.Mesh):
        devices = value.devices.flat
        first = value.devices.flat[0]
        return {
            MARK: "Mesh",
            "axis_names": _names(value.axis_names, "Mesh"),
            "axis_sizes": tuple(int(n) for n in value.axis_sizes),
            "axis_types": tuple(t.name for t in value.axis_types),
            "device_ids": tuple(int(d.id) for d in devices),
            "platform": first.platform,
            "device_kind": first.device_kind,
        }
    if isinstance(value, sharding.AbstractMesh):
        out = {
            MARK: "AbstractMesh",
            "axis_names": _names(value.axis_names, "AbstractMesh"),
            "axis_sizes": tuple(int(n) for n in value.axis_sizes),
            "axis_types": tuple(t.name for t in value.axis_types),
        }
        device = getattr(value, "abstract_device", None)
        if device is not None:
            out["platform"] = device.platform
            out["device_kind"] = device.device_kind
            if device.num_cores is not None:
                out["num_cores"] = int(device.num_cores)
        return out
    return None


def _abstract_mesh(form: dict, jax):
    sharding = jax.sharding
    axis_types = tuple(sharding.AxisType[t] for t in form["axis_types"])
    device = None
    if "platform" in form:
        try:
            from jax._src.mesh import AbstractDevice
        except ImportError:  # pragma: no cover - depends on the jax version
            AbstractDevice = None
        if AbstractDevice is not None:
            device = AbstractDevice(
                device_kind=form["device_kind"], num_cores=form.get("num_cores"), platform=form["platform"]
            )
    return sharding.AbstractMesh(
        tuple(form["axis_sizes"]), tuple(form["axis_names"]), axis_types=axis_types, abstract_device=device
    )


def _mesh(form: dict, jax):
    import numpy as np

    try:
        by_id = {d.id: d for d in jax.devices(form["platform"])}
    except RuntimeError:  # no backend for that platform here
        by_id = {}
    ids = form["device_ids"]
    if not all(i in by_id for i in ids):
        return _abstract_mesh(form, jax)
    devices = np.array([by_id[i] for i in ids], dtype=object).reshape(tuple(form["axis_sizes"]))
    axis_types = tuple(jax.sharding.AxisType[t] for t in form["axis_types"])
    return jax.sharding.Mesh(devices, tuple(form["axis_names"]), axis_types=axis_types)


def _spec(form: dict, jax):
    # The parts are decoded already (maps are decoded from the inside out).
    extra = {name: frozenset(form[name]) for name in ("unreduced", "reduced") if name in form}
    return jax.sharding.PartitionSpec(*form["parts"], **extra)


_DECODERS = {
    "Mesh": _mesh,
    "AbstractMesh": _abstract_mesh,
    "PartitionSpec": _spec,
    "UNCONSTRAINED": lambda form, jax: jax.sharding.PartitionSpec.UNCONSTRAINED,
}


def decode(form: dict):
    """The jax object a metadata map stands for (its first key is MARK), or
    the map itself without jax or for a kind this version does not know."""
    decoder = _DECODERS.get(form.get(MARK))
    if decoder is None:
        return form
    try:
        import jax
    except ImportError:
        return form
    return decoder(form, jax)
