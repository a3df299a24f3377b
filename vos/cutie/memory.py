"""Cutie's memories for one set of objects: working memory (key / value buckets with a permanent
part), optional long-term memory (prototypes consolidated from old working memory), object
memory (running sums of object summaries) and sensory memory.

Semantics of hkchengrex/Cutie@ec5cdd4 ``cutie/inference/memory_manager.py`` and
``kv_memory_store.py``: objects first seen on the same frame share a *bucket* (one key
tensor); the first memory frame of a bucket is permanent. Without long-term memory (the eval
settings of DAVIS / YouTube-VOS / MOSE) later frames are kept FIFO up to ``max_mem_frames - 1``
frames; with it (LVOS, BURST, generic), a full working memory is consolidated XMem-style: its
most-read tokens become prototypes whose values are an affinity-weighted readout of the
consolidated tokens.

Naming: B = batch (2 with flip augmentation), CK = key channels, CV = value channels,
N = memory tokens (frames x h x w), hw = query tokens of the stride-16 map, P = prototypes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from vos.cutie.spec import CutieSettings

Permanence = Literal["no", "first", "all"]


def similarity(
    mem_key: torch.Tensor,
    mem_shrinkage: torch.Tensor | None,
    query_key: torch.Tensor,
    query_selection: torch.Tensor,
) -> torch.Tensor:
    """XMem's anisotropic L2 similarity scaled by the memory shrinkage / sqrt(CK).

    mem_key B x CK x N, mem_shrinkage B x 1 x N (or None), query_key / query_selection
    B x CK x hw -> B x N x hw (official ``memory_utils.get_similarity``, same op order).
    """
    channels = mem_key.shape[1]
    mk = mem_key.transpose(1, 2)
    a_sq = mk.pow(2) @ query_selection
    two_ab = 2 * (mk @ (query_key * query_selection))
    b_sq = (query_selection * query_key.pow(2)).sum(1, keepdim=True)
    sim = -a_sq + two_ab - b_sq
    if mem_shrinkage is not None:
        sim = sim * mem_shrinkage.transpose(1, 2)
    return sim / math.sqrt(channels)


def top_k_softmax(sim: torch.Tensor, top_k: int) -> torch.Tensor:
    """Softmax over the ``top_k`` largest similarities of every query token; 0 elsewhere.

    B x N x hw -> B x N x hw. As the official ``do_softmax``, the exponent is taken without
    subtracting the maximum (similarities are <= 0). ``top_k`` is capped at N (the official
    fails when the memory holds fewer tokens).
    """
    values, indices = torch.topk(sim, k=min(top_k, sim.shape[1]), dim=1)
    weights = values.exp()
    weights = weights / weights.sum(dim=1, keepdim=True)
    return torch.zeros_like(sim).scatter_(1, indices, weights)


def full_softmax(sim: torch.Tensor) -> torch.Tensor:
    """Softmax over all memory tokens (dim 1), max-subtracted (official ``do_softmax`` without
    top-k, used by the consolidation)."""
    exp = torch.exp(sim - sim.max(dim=1, keepdim=True)[0])
    return exp / exp.sum(dim=1, keepdim=True)


@dataclass
class Bucket:
    """Objects first memorised together and their shared keys.

    Attributes:
        objects: object ids in the bucket.
        key: B x CK x N; shrinkage: B x 1 x N.
        permanent: tokens at the start of ``key`` that are never evicted.
        selection: B x CK x (N - permanent) query selections of the temporary part (kept only
            by a working memory that feeds a long-term memory).
        use_count, life_count: B x (N - permanent) read counters of the temporary part (only
            when usage is counted).
    """

    objects: list[int]
    key: torch.Tensor
    shrinkage: torch.Tensor
    permanent: int = 0
    selection: torch.Tensor | None = None
    use_count: torch.Tensor | None = None
    life_count: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.key.shape[-1])

    @property
    def temporary(self) -> int:
        return self.size - self.permanent

    @property
    def usage(self) -> torch.Tensor:
        """B x (N - permanent) reads per life step."""
        assert self.use_count is not None and self.life_count is not None
        return self.use_count / self.life_count


def _cat(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else torch.cat([a, b], dim=-1)


@dataclass
class KeyValueStore:
    """Key / value buckets (official ``KeyValueMemoryStore``).

    Attributes:
        save_selection: keep the temporary tokens' selection (consolidation needs it).
        save_usage: count reads of the temporary tokens.
    """

    save_selection: bool = False
    save_usage: bool = False
    buckets: dict[int, Bucket] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # object -> B x CV x N
    next_bucket: int = 0

    @property
    def engaged(self) -> bool:
        return bool(self.buckets)

    def bucket_of(self, obj: int) -> int:
        return next(b for b, bucket in self.buckets.items() if obj in bucket.objects)

    def add(
        self,
        key: torch.Tensor,
        shrinkage: torch.Tensor,
        values: dict[int, torch.Tensor],
        permanence: Permanence,
        selection: torch.Tensor | None = None,
        bucket_id: int | None = None,
    ) -> None:
        """key B x CK x n, shrinkage B x 1 x n, values object -> B x CV x n, selection
        B x CK x n.

        Known objects extend their bucket; new ones open one new bucket together (or go to
        ``bucket_id``: long-term prototypes of a working-memory bucket). ``"first"``: a
        bucket's first write is permanent; ``"all"``: every write is (put in front);
        ``"no"``: none is."""
        prepend_values = permanence == "all"
        enabled: list[int] = []
        if bucket_id is not None:
            enabled.append(bucket_id)
            for obj, value in values.items():
                self.values[obj] = _cat(self.values.get(obj), value)
            bucket = self.buckets.get(bucket_id)
            if bucket is None:
                bucket = Bucket([], key[..., :0], shrinkage[..., :0])
                self.buckets[bucket_id] = bucket
            bucket.objects = list(values)
        else:
            new_bucket: Bucket | None = None
            for obj, value in values.items():
                if obj in self.values:
                    old = self.values[obj]
                    self.values[obj] = torch.cat(
                        [value, old] if prepend_values else [old, value], -1
                    )
                    found = self.bucket_of(obj)
                    if found not in enabled:
                        enabled.append(found)
                else:
                    self.values[obj] = value
                    if new_bucket is None:
                        new_bucket = Bucket([], key[..., :0], shrinkage[..., :0])
                        self.buckets[self.next_bucket] = new_bucket
                        enabled.append(self.next_bucket)
                        self.next_bucket += 1
                    new_bucket.objects.append(obj)
        tokens = int(key.shape[-1])
        batch = int(key.shape[0])
        for found in enabled:
            bucket = self.buckets[found]
            as_permanent = permanence == "all" or (permanence == "first" and bucket.permanent == 0)
            if as_permanent:
                bucket.permanent += tokens
                bucket.key = torch.cat([key, bucket.key], dim=-1)
                bucket.shrinkage = torch.cat([shrinkage, bucket.shrinkage], dim=-1)
                continue
            bucket.key = torch.cat([bucket.key, key], dim=-1)
            bucket.shrinkage = torch.cat([bucket.shrinkage, shrinkage], dim=-1)
            if self.save_selection:
                assert selection is not None
                bucket.selection = _cat(bucket.selection, selection)
            if self.save_usage:
                zeros = torch.zeros((batch, tokens), device=key.device, dtype=torch.float32)
                bucket.use_count = _cat(bucket.use_count, zeros)
                bucket.life_count = _cat(bucket.life_count, zeros + 1e-7)

    def update_usage(self, bucket_id: int, usage: torch.Tensor) -> None:
        """usage B x N (affinity summed over the query tokens): count the temporary part's
        reads and age it by one step."""
        bucket = self.buckets[bucket_id]
        if not self.save_usage or bucket.temporary == 0:
            return
        assert bucket.use_count is not None and bucket.life_count is not None
        bucket.use_count = bucket.use_count + usage[:, bucket.permanent :]
        bucket.life_count = bucket.life_count + 1

    def _cut(self, bucket_id: int, keep: slice | torch.Tensor) -> None:
        """Keep the permanent tokens and the temporary tokens ``keep`` selects (a slice, or
        B x n indices gathered per batch entry)."""
        bucket = self.buckets[bucket_id]
        perm = bucket.permanent

        def temporary(x: torch.Tensor, offset: int) -> torch.Tensor:
            part = x[..., offset:]
            if isinstance(keep, slice):
                return part[..., keep]
            return torch.stack([part[b][..., keep[b]] for b in range(part.shape[0])])

        def full(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x[..., :perm], temporary(x, perm)], dim=-1)

        bucket.key = full(bucket.key)
        bucket.shrinkage = full(bucket.shrinkage)
        for name in ("selection", "use_count", "life_count"):
            value = getattr(bucket, name)
            if value is not None:
                setattr(bucket, name, temporary(value, 0))
        for obj in bucket.objects:
            self.values[obj] = full(self.values[obj])

    def keep_recent(self, bucket_id: int, max_tokens: int) -> None:
        """Drop the oldest temporary tokens beyond the last ``max_tokens``."""
        if self.buckets[bucket_id].temporary > max_tokens:
            self._cut(bucket_id, slice(self.buckets[bucket_id].temporary - max_tokens, None))

    def keep_most_used(self, bucket_id: int, max_tokens: int) -> None:
        """Keep the ``max_tokens`` most used temporary tokens, most used first (official
        ``remove_obsolete_features``)."""
        bucket = self.buckets[bucket_id]
        survivors = torch.topk(bucket.usage, k=max_tokens, dim=-1).indices
        self._cut(bucket_id, survivors)

    def drop_objects(self, keep: list[int]) -> None:
        """Forget every object not in ``keep`` (and buckets left empty)."""
        for bucket_id in list(self.buckets):
            bucket = self.buckets[bucket_id]
            bucket.objects = [o for o in bucket.objects if o in keep]
            if not bucket.objects:
                del self.buckets[bucket_id]
        self.values = {o: v for o, v in self.values.items() if o in keep}

    @property
    def nbytes(self) -> int:
        tensors = [
            t
            for b in self.buckets.values()
            for t in (b.key, b.shrinkage, b.selection, b.use_count, b.life_count)
            if t is not None
        ]
        tensors += list(self.values.values())
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class MemoryBank:
    """All memories of one set of objects.

    Attributes:
        settings: the inference settings (sizes, top-k, long-term memory).
        work: the working memory.
        long: the long-term memory (None without ``use_long_term``).
        obj_memory: object -> B x Q x (C + 1) running sums of object summaries (area last;
            the object transformer divides, giving the running mean).
        sensory: object -> B x Cs x h x w hidden state.
        frame_tokens: h x w of a memory frame (set by the first write).
    """

    settings: CutieSettings
    work: KeyValueStore = field(init=False)
    long: KeyValueStore | None = field(init=False)
    obj_memory: dict[int, torch.Tensor] = field(default_factory=dict)
    sensory: dict[int, torch.Tensor] = field(default_factory=dict)
    frame_tokens: int = 0

    def __post_init__(self) -> None:
        use_long = self.settings.use_long_term
        self.work = KeyValueStore(save_selection=use_long, save_usage=use_long)
        self.long = (
            KeyValueStore(save_usage=self.settings.long_term.count_usage) if use_long else None
        )

    @property
    def nbytes(self) -> int:
        tensors = [*self.obj_memory.values(), *self.sensory.values()]
        total = self.work.nbytes + (self.long.nbytes if self.long is not None else 0)
        return total + sum(t.numel() * t.element_size() for t in tensors)

    # --- sensory --------------------------------------------------------------------------

    def ensure_sensory(self, objects: list[int], like: torch.Tensor, dim: int) -> None:
        """Zero sensory state for objects that have none; ``like``: B x _ x h x w."""
        batch, _, height, width = like.shape
        for obj in objects:
            if obj not in self.sensory:
                self.sensory[obj] = torch.zeros(
                    (batch, dim, height, width), device=like.device, dtype=torch.float32
                )

    def get_sensory(self, objects: list[int]) -> torch.Tensor:
        """-> B x N x Cs x h x w."""
        return torch.stack([self.sensory[o] for o in objects], dim=1)

    def set_sensory(self, sensory: torch.Tensor, objects: list[int]) -> None:
        for i, obj in enumerate(objects):
            self.sensory[obj] = sensory[:, i]

    # --- reading --------------------------------------------------------------------------

    def affinity(
        self, bucket_id: int, query_key: torch.Tensor, query_selection: torch.Tensor
    ) -> torch.Tensor:
        """Top-k affinity of a bucket's memory (long-term prototypes first) to the query,
        B x N x hw; counts the reads where usage is kept."""
        bucket = self.work.buckets[bucket_id]
        long_bucket = None if self.long is None else self.long.buckets.get(bucket_id)
        key, shrinkage = bucket.key, bucket.shrinkage
        if long_bucket is not None:
            key = torch.cat([long_bucket.key, key], dim=-1)
            shrinkage = torch.cat([long_bucket.shrinkage, shrinkage], dim=-1)
        sim = similarity(key.float(), shrinkage.float(), query_key, query_selection)
        affinity = top_k_softmax(sim, self.settings.top_k)
        if self.long is not None:
            usage = affinity.sum(dim=2)
            long_size = 0 if long_bucket is None else long_bucket.size
            self.work.update_usage(bucket_id, usage[:, long_size:])
            if long_bucket is not None and self.settings.long_term.count_usage:
                self.long.update_usage(bucket_id, usage[:, :long_size])
        return affinity

    def values(self, objects: list[int]) -> torch.Tensor:
        """B x n x CV x N values of ``objects`` (one bucket), long-term prototypes first."""
        value = torch.stack([self.work.values[o] for o in objects], dim=1)
        if self.long is not None and objects[0] in self.long.values:
            long_value = torch.stack([self.long.values[o] for o in objects], dim=1)
            value = torch.cat([long_value, value], dim=-1)
        return value

    # --- writing --------------------------------------------------------------------------

    def add(
        self,
        key: torch.Tensor,
        shrinkage: torch.Tensor,
        selection: torch.Tensor,
        value: torch.Tensor,
        summaries: torch.Tensor,
        objects: list[int],
        *,
        permanence: Permanence,
    ) -> None:
        """Write one memory frame.

        key / selection B x CK x h x w, shrinkage B x 1 x h x w, value B x N x CV x h x w,
        summaries B x N x Q x (C + 1), ``objects`` in channel order."""
        if self.frame_tokens == 0:
            self.frame_tokens = int(value.shape[-2] * value.shape[-1])
        for i, obj in enumerate(objects):
            if obj in self.obj_memory:
                self.obj_memory[obj] = self.obj_memory[obj] + summaries[:, i]
            else:
                self.obj_memory[obj] = summaries[:, i]
        flat = value.flatten(3)
        values = {obj: flat[:, i] for i, obj in enumerate(objects)}
        self.work.add(
            key.flatten(2), shrinkage.flatten(2), values, permanence, selection.flatten(2)
        )
        if self.long is None:
            max_tokens = (self.settings.max_mem_frames - 1) * self.frame_tokens
            for bucket_id in self.work.buckets:
                self.work.keep_recent(bucket_id, max_tokens)
            return
        lt = self.settings.long_term
        for bucket_id in self.work.buckets:
            if self.work.buckets[bucket_id].temporary < (lt.max_mem_frames - 1) * self.frame_tokens:
                continue
            long_bucket = self.long.buckets.get(bucket_id)
            if long_bucket is not None and long_bucket.temporary >= (
                lt.max_num_tokens - lt.num_prototypes
            ):
                self.long.keep_most_used(
                    bucket_id, lt.max_num_tokens - lt.num_prototypes - lt.buffer_tokens
                )
            self._consolidate(bucket_id)

    def _consolidate(self, bucket_id: int) -> None:
        """Turn a bucket's old temporary tokens (all but the last ``min_mem_frames - 1``
        frames) into ``num_prototypes`` long-term prototypes."""
        assert self.long is not None
        lt = self.settings.long_term
        keep = (lt.min_mem_frames - 1) * self.frame_tokens
        bucket = self.work.buckets[bucket_id]
        start, end = bucket.permanent, bucket.size - keep
        assert bucket.selection is not None
        cand_key = bucket.key[..., start:end]
        cand_shrinkage = bucket.shrinkage[..., start:end]
        cand_selection = bucket.selection[..., : end - start]
        usage = bucket.usage[:, : end - start]
        picks = torch.topk(usage, k=lt.num_prototypes, dim=-1, sorted=True).indices
        batch = range(cand_key.shape[0])
        proto_key = torch.stack([cand_key[b][:, picks[b]] for b in batch])
        proto_selection = torch.stack([cand_selection[b][:, picks[b]] for b in batch])
        affinity = full_softmax(similarity(cand_key, cand_shrinkage, proto_key, proto_selection))
        proto_values = {o: self.work.values[o][..., start:end] @ affinity for o in bucket.objects}
        proto_shrinkage = cand_shrinkage @ affinity
        if bucket.temporary > keep:
            self.work.keep_recent(bucket_id, keep)
        self.long.add(proto_key, proto_shrinkage, proto_values, "no", bucket_id=bucket_id)

    def drop_objects(self, keep: list[int]) -> None:
        self.work.drop_objects(keep)
        if self.long is not None:
            self.long.drop_objects(keep)
        self.obj_memory = {o: v for o, v in self.obj_memory.items() if o in keep}
        self.sensory = {o: v for o, v in self.sensory.items() if o in keep}
