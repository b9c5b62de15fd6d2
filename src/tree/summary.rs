//! What each node knows of its subtree, kept up to date in constant time
//! by every change: the kinds of leaves, their number, key order, empty
//! subtrees and height.

use super::*;
use crate::key::Key;

/// Facts about a subtree that each change updates in constant time from
/// the changed child's own summary: a node being built or edited pays a
/// few instructions per change, and split, filter, merge and prune read
/// them instead of walking the leaves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Summary {
    /// The kinds of leaves below, or more: a change that takes a leaf away
    /// leaves its kind in. Enough to place a subtree whose kinds all go to
    /// one output, which is all it is used for.
    pub(crate) types: LeafTypes,
    /// The number of leaves below, exactly.
    pub(crate) leaves: u64,
    /// Whether this node's keys are in ascending order, so sorted walks
    /// need not sort.
    pub(crate) sorted: bool,
    /// Keys in order here and at every level below. With `no_empty`, the
    /// form filter outputs take (see [`canonical`]), so an output can share
    /// this node as is. Like `no_empty`, it may be false when it is true
    /// (some edits do not look far enough to tell), never the reverse.
    pub(crate) sorted_below: bool,
    /// No nested node without leaves, here or below (see [`prune`]).
    pub(crate) no_empty: bool,
    /// How many levels lie below, or more: a leaf here makes 1, a nested
    /// node one more than its own. Like `types`, a change that takes a
    /// deep child away leaves the bound as it was. Lets `State` check the
    /// nesting limit when it puts a subtree somewhere, and tells `drop`
    /// when freeing needs care (see [`Node::exact_height`]).
    pub(crate) height: u8,
}

impl Summary {
    pub(crate) const EMPTY: Summary = Summary {
        types: LeafTypes { bits: 0 },
        leaves: 0,
        sorted: true,
        sorted_below: true,
        no_empty: true,
        height: 0,
    };

    pub(crate) fn of(child: &Child) -> Summary {
        match child {
            Child::Leaf(leaf) => Summary {
                types: LeafTypes::of(leaf),
                ..Summary::LEAF
            },
            Child::Node(n) => n.summary,
        }
    }

    /// What a leaf adds, but for its type.
    pub(crate) const LEAF: Summary = Summary {
        leaves: 1,
        ..Summary::EMPTY
    };

    /// This summary with `child` added (or changed: `before` is what it
    /// summarized before).
    pub(crate) fn with(self, child: &Child, before: Option<&Summary>) -> Summary {
        let mut sum = self.plus(Summary::of(child));
        sum.leaves -= before.map_or(0, |b| b.leaves);
        sum
    }

    /// This summary with a child summarized by `below` added.
    pub(crate) fn plus(self, below: Summary) -> Summary {
        Summary {
            types: self.types.union(below.types),
            leaves: self.leaves + below.leaves,
            sorted: self.sorted,
            sorted_below: self.sorted_below && below.sorted_below,
            no_empty: self.no_empty && below.no_empty && below.leaves > 0,
            height: self.height.max(below.height.saturating_add(1)),
        }
    }
}

/// Which kinds of leaves lie below a node, in one word: a bit per variable
/// type id below `LeafTypes::OVERFLOW` (62), that bit when some variable's
/// type id is too large for the set, and bit `LeafTypes::ARRAY` (63) for
/// bare arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeafTypes {
    pub(crate) bits: u64,
}

impl LeafTypes {
    /// The bit that stands for bare arrays.
    pub(crate) const ARRAY: u32 = 63;
    /// The bit that stands for all type ids from this one up.
    pub(crate) const OVERFLOW: u32 = 62;

    /// The kind of one leaf.
    pub(crate) fn of(leaf: &Leaf) -> LeafTypes {
        let bit = match leaf {
            Leaf::Array(_) => Self::ARRAY,
            Leaf::Variable(v) => v.type_id().raw().min(Self::OVERFLOW),
        };
        LeafTypes { bits: 1 << bit }
    }

    pub(crate) fn union(self, other: LeafTypes) -> LeafTypes {
        LeafTypes {
            bits: self.bits | other.bits,
        }
    }

    pub(crate) fn overflowed(self) -> bool {
        self.bits & (1 << Self::OVERFLOW) != 0
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// The set as bits (bit `i` for type id `i`, `ARRAY` for bare arrays),
    /// or `None` when it overflowed and cannot tell.
    pub(crate) fn bits(self) -> Option<u64> {
        (!self.overflowed()).then_some(self.bits)
    }
}

impl Node {
    /// Checks this node's summary, and those below, against what the
    /// entries hold: the kinds may be more than those present, the leaf
    /// count must be exact, and each flag may be false when the property
    /// holds but not the reverse. For tests and fuzzing.
    #[doc(hidden)]
    pub fn check_summary(&self) -> Result<(), String> {
        self.actual_summary().map(|_| ())
    }

    /// The summary this node should have (with the kinds actually present),
    /// once the summaries below are checked.
    pub(crate) fn actual_summary(&self) -> Result<Summary, String> {
        let keys: Vec<&Key> = self.keys().collect();
        let sorted = keys.windows(2).all(|w| w[0] < w[1]);
        let mut actual = Summary {
            sorted,
            sorted_below: sorted,
            ..Summary::EMPTY
        };
        for (key, child) in self.iter() {
            let below = match child {
                Child::Node(n) => n.actual_summary().map_err(|e| format!("{key}/{e}"))?,
                Child::Leaf(_) => Summary::of(child),
            };
            actual = actual.plus(below);
        }
        let claimed = self.summary;
        let problems = [
            (
                claimed.types.bits & actual.types.bits != actual.types.bits,
                "kinds",
            ),
            (claimed.leaves != actual.leaves, "leaf count"),
            (claimed.sorted && !actual.sorted, "sorted"),
            (claimed.sorted_below && !actual.sorted_below, "sorted below"),
            (claimed.no_empty && !actual.no_empty, "no empty subtree"),
            (claimed.height < actual.height, "height"),
        ];
        match problems.iter().find(|(wrong, _)| *wrong) {
            Some((_, what)) => Err(format!(
                ": summary wrong ({what}): {claimed:?}, actual {actual:?}"
            )),
            None => Ok(actual),
        }
    }
}
