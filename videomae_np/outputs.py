"""Model outputs with transformers' field names, readable as attributes or by key."""

from __future__ import annotations

from dataclasses import dataclass, fields


class ModelOutput:
    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def keys(self):
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def to_tuple(self):
        return tuple(getattr(self, k) for k in self.keys())


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: object = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class VideoMAEForPreTrainingOutput(ModelOutput):
    loss: object = None
    logits: object = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class ImageClassifierOutput(ModelOutput):
    loss: object = None
    logits: object = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
