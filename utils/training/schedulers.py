"""Learning-rate schedulers used by the recipe."""

from speechbrain.nnet.schedulers import NewBobScheduler

__all__ = ["SignSafeNewBobScheduler"]


class SignSafeNewBobScheduler(NewBobScheduler):
    """SpeechBrain's NewBob, with the relative improvement measured against ``|previous metric|``.

    The quantizer's validation loss (MSE + BSQ entropy term) can be negative; NewBob's
    ``(prev - new) / prev`` then flips sign, so a real improvement counted as a regression and
    annealed the learning rate. For positive losses the two are identical. State and checkpointing
    are NewBob's.

    Arguments
    ---------
    *args, **kwargs : NewBob's (``initial_value``, ``annealing_factor``, ``improvement_threshold``,
        ``patient``).
    sign_safe : False: SpeechBrain's NewBob itself (the original mode; docs/deviations.md #8).
    """

    def __init__(self, *args, sign_safe: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sign_safe = sign_safe

    def __call__(self, metric_value: float) -> tuple[float, float]:
        """Record ``metric_value``; return the (current, next) learning rate."""
        if not self.sign_safe:
            return super().__call__(metric_value)
        old_value = new_value = self.hyperparam_value
        if self.metric_values:
            previous = self.metric_values[-1]
            improvement = 0.0 if previous == 0 else (previous - metric_value) / abs(previous)
            if improvement < self.improvement_threshold:
                if self.current_patient == 0:
                    new_value *= self.annealing_factor
                    self.current_patient = self.patient
                else:
                    self.current_patient -= 1
        self.metric_values.append(metric_value)
        self.hyperparam_value = new_value
        return old_value, new_value
