"""nnx_state: Flax NNX's ``State`` over the native library libnnx_state.

Code written against ``flax.nnx`` (0.12) moves over by changing its import::

    import nnx_state as nnx

    state = nnx.State({
        'linear': {'kernel': nnx.Param(np.zeros((2, 3))), 'bias': nnx.Param(np.zeros(3))},
        'bn': {'mean': nnx.BatchStat(np.zeros(3))},
    })
    params, stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
    params['linear']['bias'][...] += 1      # seen by `state` too
    merged = nnx.merge_state(params, stats)

The native library is found through ``NNX_STATE_LIB``, a copy inside this
package, or the cargo target directory of the source tree (build it first
with ``cargo build --release``).
"""

from . import errors, filterlib, statelib, variablelib
from ._lib import LIB_PATH as _LIB_PATH
from ._lib import VERSION as library_version
from .errors import (
    NnxError,
    NnxFormatError,
    NnxIOError,
    NnxIndexError,
    NnxKeyError,
    NnxMemoryError,
    NnxRuntimeError,
    NnxTypeError,
    NnxValueError,
)
from .filterlib import (
    All,
    Any,
    Everything,
    Not,
    Nothing,
    OfType,
    PathContains,
    PathIn,
    WithTag,
)
from . import checkpoint
from .checkpoint import (
    DLPackArray,
    dlpack,
    from_dlpack,
    load_safetensors,
    parse_filter,
    safetensors_metadata,
    save_safetensors,
    set_safetensors_metadata,
)
from ._keys import parse_path
from .orbax_io import load_orbax, save_orbax
from .msgpack_io import load_msgpack
from ._values import KeyData
from .flax_interop import from_flax, to_flax
from .statelib import (
    FlatState,
    State,
    diff,
    filter_state,
    from_flat_state,
    map_state,
    merge_state,
    replace_by_pure_dict,
    restore_int_paths,
    split_state,
    to_flat_state,
    to_pure_dict,
)
from ._update import set_metadata, update
from .variablelib import (
    BatchStat,
    Cache,
    Intermediate,
    OptArray,
    OptState,
    OptVariable,
    Param,
    Perturbation,
    RngCount,
    RngKey,
    RngState,
    Variable,
    VarDefaults,
    VariableMeta,
    use_eager_sharding,
    using_eager_sharding,
    var_defaults,
    variable_type,
)

from . import pytrees

pytrees.install()  # JAX pytrees: now if jax is imported, else when it is

__version__ = "0.1.0"
library_path = str(_LIB_PATH)


def state(node=None, *filters):
    """``State(node)``, filtered when filters are given: the counterpart of
    ``nnx.state`` for states and nested mappings (there are no Modules here)."""
    s = node if isinstance(node, State) else State(node)
    if filters:
        return filter_state(s, *filters)
    return s


__all__ = [
    # variables
    "Variable", "Param", "BatchStat", "Cache", "Intermediate", "Perturbation",
    "RngState", "RngKey", "RngCount", "OptState", "OptArray", "OptVariable",
    "VariableMeta", "variable_type", "var_defaults", "VarDefaults", "use_eager_sharding",
    "using_eager_sharding", "KeyData",
    # states
    "State", "FlatState", "state", "to_flat_state", "from_flat_state",
    "filter_state", "split_state", "merge_state", "map_state", "diff",
    "to_pure_dict", "replace_by_pure_dict", "restore_int_paths", "update",
    "set_metadata", "parse_path",
    # filters
    "OfType", "WithTag", "PathContains", "PathIn", "Any", "All", "Not",
    "Everything", "Nothing",
    # checkpoints and exchange
    "load_safetensors", "save_safetensors", "parse_filter", "dlpack", "from_dlpack",
    "DLPackArray", "safetensors_metadata", "set_safetensors_metadata",
    "load_orbax", "save_orbax", "load_msgpack",
    # Flax
    "from_flax", "to_flax",
    # errors
    "NnxError", "NnxValueError", "NnxKeyError", "NnxTypeError", "NnxIndexError",
    "NnxRuntimeError", "NnxMemoryError", "NnxFormatError", "NnxIOError",
    # modules and facts
    "checkpoint", "errors", "filterlib", "pytrees", "statelib", "variablelib", "library_version",
    "library_path",
]
