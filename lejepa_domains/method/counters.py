"""Step counters kept as host integers and mirrored into the state dict under a tensor key.

A counter that only seeds a random draw (SIGReg's directions, the masking variant's blocks) must not live in a
device buffer: reading it back (``buffer.item()``) is a device → host synchronisation at every step on CUDA. The
modules here keep it as a plain Python ``int`` (the source of truth, advanced on the host) and write it into their
state dict as a 0-d ``int64`` CPU tensor under the same key the old buffer had, so checkpoints keep their layout and
checkpoints written with the buffer still load.
"""

from __future__ import annotations

import torch

__all__ = ["HostCounters"]


class HostCounters:
    """Mixin for an :class:`torch.nn.Module` (put it first among the bases): the integer attributes named in
    ``host_counters`` are saved as ``prefix + name`` in ``state_dict()`` and read back by ``load_state_dict()``
    (a missing key is reported as missing under ``strict``, as a persistent buffer's would be)."""

    host_counters: tuple[str, ...] = ()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)  # type: ignore[misc]
        for name in self.host_counters:
            destination[prefix + name] = torch.tensor(int(getattr(self, name)), dtype=torch.long)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        keys = {prefix + name: name for name in self.host_counters}
        for key, name in keys.items():
            if key in state_dict:
                value = state_dict[key]
                try:
                    setattr(self, name, int(value))  # a checkpoint's 0-d tensor (or a plain int)
                except (TypeError, ValueError, RuntimeError) as e:
                    error_msgs.append(f"{key}: expected an integer step counter, got {value!r} ({e})")
            elif strict:
                missing_keys.append(key)
        rest = {k: v for k, v in state_dict.items() if k not in keys}  # not "unexpected" for the base class
        super()._load_from_state_dict(rest, prefix, local_metadata, strict,  # type: ignore[misc]
                                      missing_keys, unexpected_keys, error_msgs)
