"""The consistency lens: explain an activation in a few tokens, and check the tokens carry it.

dump.py (activations of a frozen subject), subject.py (reading and patching it), models.py (decoder,
encoder), losses.py, task.py (LensTask: trained by interfere.train's loop), evaluate.py (KL, FVE, baselines).
Importing this package registers the task as `task.name=lens`.
"""

from interfere.tasks import register


def _lens_task():
    from interfere.lens.task import LensTask

    return LensTask


register("lens", _lens_task)
