"""Life-like cellular automata as a sequence task: rule prefix + board t -> boards t+1..t+K.

rules (B/S notation <-> 18 bits), simulate (batched toroidal simulator), tokens (vocabulary, layout, masks),
stream (deterministic data), rollout (the model as a simulator), render (videos), task (LifeTask).
"""

from interfere.tasks.life.task import LifeBatch, LifeTask

__all__ = ["LifeTask", "LifeBatch"]
