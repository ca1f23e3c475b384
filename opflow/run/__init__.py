"""The run layer, below training, evaluation and embedding: a trained model as a spec plus
weights (:mod:`~opflow.run.spec`, :mod:`~opflow.run.checkpoint`), and how it executes — device
and precision (:mod:`~opflow.run.execution`), process group (:mod:`~opflow.run.distributed`).
"""

from opflow.run.execution import Execution, resolve_device
from opflow.run.spec import Task, TaskModel, TrainedModel, build_task_model, load_trained

__all__ = [
    "Execution",
    "Task",
    "TaskModel",
    "TrainedModel",
    "build_task_model",
    "load_trained",
    "resolve_device",
]
