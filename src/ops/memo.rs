//! What split, filter and merge remember about a node they ran on, so that
//! the same call on the same, unchanged node costs nothing: the outputs of
//! its last few filters or splits whose filters look only at paths and
//! types, and the result of its last merge. All held weakly: a node keeps
//! nothing alive that its caller dropped, so a repeat is free exactly while
//! the previous result is still held. The memo lives in the node's derived
//! slot, which any change to the node empties.

use std::sync::{Arc, Mutex, Weak};

use crate::filter::Filter;
use crate::tree::Node;

/// How many filter or split results a node keeps: an engine typically
/// alternates a few filter lists on the same state.
const PARTITIONS_KEPT: usize = 4;

/// What names a filter or split: whether it was a split, and the filters
/// themselves (compared as filters: equal filters select the same leaves).
#[derive(PartialEq, Eq, Debug)]
pub(crate) struct PartitionKey {
    exhaustive: bool,
    filters: Box<[Filter]>,
}

impl PartitionKey {
    /// Whether a call with these filters is remembered: when they look
    /// only at paths and types (tags and callbacks may change: those calls
    /// are never remembered).
    pub(crate) fn applies(filters: &[Filter]) -> bool {
        filters.iter().all(Filter::depends_only_on_structure)
    }

    fn names(&self, filters: &[Filter], exhaustive: bool) -> bool {
        self.exhaustive == exhaustive && *self.filters == *filters
    }
}

/// The other inputs of a merge and its result.
type MergeRecord = (Vec<Weak<Node>>, Weak<Node>);

#[derive(Default)]
struct Memo {
    /// Most recent first.
    partitions: Mutex<Vec<(PartitionKey, Vec<Weak<Node>>)>>,
    /// A live `Weak` keeps its address from being reused, so identity is a
    /// sound test of the inputs.
    merge: Mutex<Option<MergeRecord>>,
}

/// The outputs a filter or split with these filters gave for this very
/// node, if it was one of the last few and its caller still holds them all.
pub(crate) fn cached_partition(
    node: &Node,
    filters: &[Filter],
    exhaustive: bool,
) -> Option<Vec<Arc<Node>>> {
    let upgraded: Vec<Option<Arc<Node>>> = {
        let memo = node.memo_if_made::<Memo>()?;
        let partitions = memo.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let (_, outputs) = partitions
            .iter()
            .find(|(k, _)| k.names(filters, exhaustive))?;
        outputs.iter().map(Weak::upgrade).collect()
    };
    // When one output is gone, the others upgraded here may be their last
    // references: they drop (running any release callbacks) only now, after
    // the lock.
    upgraded.into_iter().collect()
}

pub(crate) fn store_partition(
    node: &Node,
    filters: &[Filter],
    exhaustive: bool,
    outputs: &[Arc<Node>],
) {
    let Some(memo) = node.memo::<Memo>() else {
        return;
    };
    let key = PartitionKey {
        exhaustive,
        filters: filters.into(),
    };
    let mut partitions = memo.partitions.lock().unwrap_or_else(|p| p.into_inner());
    partitions.retain(|(k, outputs)| *k != key && outputs.iter().all(|o| o.strong_count() > 0));
    partitions.insert(0, (key, outputs.iter().map(Arc::downgrade).collect()));
    partitions.truncate(PARTITIONS_KEPT);
}

/// The result of merging this node with `others`, if that was the last
/// merge to begin with it and the result is still alive.
pub(crate) fn cached_merge(node: &Node, others: &[Arc<Node>]) -> Option<Arc<Node>> {
    let memo = node.memo_if_made::<Memo>()?;
    let merge = memo.merge.lock().unwrap_or_else(|p| p.into_inner());
    match &*merge {
        Some((inputs, result))
            if inputs.len() == others.len()
                && inputs
                    .iter()
                    .zip(others)
                    .all(|(w, a)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(a))) =>
        {
            result.upgrade()
        }
        _ => None,
    }
}

pub(crate) fn store_merge(node: &Node, others: &[Arc<Node>], result: &Arc<Node>) {
    let Some(memo) = node.memo::<Memo>() else {
        return;
    };
    let inputs = others.iter().map(Arc::downgrade).collect();
    *memo.merge.lock().unwrap_or_else(|p| p.into_inner()) = Some((inputs, Arc::downgrade(result)));
}
