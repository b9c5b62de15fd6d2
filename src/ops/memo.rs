//! What split, filter and merge remember about an input they ran on (a
//! tree node, or a columnar view), so that the same call on the same,
//! unchanged input costs nothing: the outputs of its last few filters or
//! splits whose filters look only at paths and types, and the result of its
//! last merge. All held weakly: an input keeps nothing alive that its
//! caller dropped, so a repeat is free exactly while the previous result is
//! still held. A node keeps its memo in its derived slot, which any change
//! to the node empties; a view never changes.

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
type MergeRecord<T> = (Vec<Weak<T>>, Weak<T>);

/// The filters of a call and its outputs.
type PartitionRecord<T> = (PartitionKey, Vec<Option<Weak<T>>>);

/// What an input remembers: of trees (`T = Node`, kept in the node's
/// derived slot) or of columnar views (`T = View`, kept in the view).
pub(crate) struct Memo<T> {
    /// Most recent first; `None` for an output that got nothing (views
    /// have no empty form; a tree's empty output is the shared empty node).
    partitions: Mutex<Vec<PartitionRecord<T>>>,
    /// A live `Weak` keeps its address from being reused, so identity is a
    /// sound test of the inputs.
    merge: Mutex<Option<MergeRecord<T>>>,
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo {
            partitions: Mutex::new(Vec::new()),
            merge: Mutex::new(None),
        }
    }
}

impl<T> Memo<T> {
    /// The outputs a filter or split with these filters gave for this
    /// input, if it was one of the last few and its caller still holds
    /// them all.
    pub(crate) fn cached_partition(
        &self,
        filters: &[Filter],
        exhaustive: bool,
    ) -> Option<Vec<Option<Arc<T>>>> {
        let upgraded: Vec<Option<Option<Arc<T>>>> = {
            let partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
            let (_, outputs) = partitions
                .iter()
                .find(|(k, _)| k.names(filters, exhaustive))?;
            outputs
                .iter()
                .map(|o| match o {
                    Some(weak) => weak.upgrade().map(Some),
                    None => Some(None),
                })
                .collect()
        };
        // When one output is gone, the others upgraded here may be their
        // last references: they drop (running any release callbacks) only
        // now, after the lock.
        upgraded.into_iter().collect()
    }

    pub(crate) fn store_partition(
        &self,
        filters: &[Filter],
        exhaustive: bool,
        outputs: &[Option<Arc<T>>],
    ) {
        let key = PartitionKey {
            exhaustive,
            filters: filters.into(),
        };
        let alive = |o: &Option<Weak<T>>| o.as_ref().is_none_or(|w| w.strong_count() > 0);
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        partitions.retain(|(k, outputs)| *k != key && outputs.iter().all(alive));
        let weak = outputs
            .iter()
            .map(|o| o.as_ref().map(Arc::downgrade))
            .collect();
        partitions.insert(0, (key, weak));
        partitions.truncate(PARTITIONS_KEPT);
    }

    /// The result of merging this input with `others`, if that was the
    /// last merge to begin with it and the result is still alive.
    pub(crate) fn cached_merge(&self, others: &[&Arc<T>]) -> Option<Arc<T>> {
        let merge = self.merge.lock().unwrap_or_else(|p| p.into_inner());
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

    pub(crate) fn store_merge(&self, others: &[&Arc<T>], result: &Arc<T>) {
        let inputs = others.iter().map(|a| Arc::downgrade(a)).collect();
        *self.merge.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((inputs, Arc::downgrade(result)));
    }
}

/// [`Memo::cached_partition`] of a tree node.
pub(crate) fn cached_partition(
    node: &Node,
    filters: &[Filter],
    exhaustive: bool,
) -> Option<Vec<Arc<Node>>> {
    let outputs = node
        .memo_if_made::<Memo<Node>>()?
        .cached_partition(filters, exhaustive)?;
    outputs.into_iter().collect()
}

pub(crate) fn store_partition(
    node: &Node,
    filters: &[Filter],
    exhaustive: bool,
    outputs: &[Arc<Node>],
) {
    if let Some(memo) = node.memo::<Memo<Node>>() {
        let outputs: Vec<Option<Arc<Node>>> = outputs.iter().cloned().map(Some).collect();
        memo.store_partition(filters, exhaustive, &outputs);
    }
}

/// [`Memo::cached_merge`] of a tree node.
pub(crate) fn cached_merge(node: &Node, others: &[Arc<Node>]) -> Option<Arc<Node>> {
    let others: Vec<&Arc<Node>> = others.iter().collect();
    node.memo_if_made::<Memo<Node>>()?.cached_merge(&others)
}

pub(crate) fn store_merge(node: &Node, others: &[Arc<Node>], result: &Arc<Node>) {
    if let Some(memo) = node.memo::<Memo<Node>>() {
        let others: Vec<&Arc<Node>> = others.iter().collect();
        memo.store_merge(&others, result);
    }
}
