"""Training and evaluation engine.

Entry points (what the CLI calls):

- ``vidattn.engine.train.run_training(config) -> RunResult`` / ``resume_training(run_dir)``
- ``vidattn.engine.evaluate.run_evaluation(run_dir_or_weights, overrides=..., split=...) -> EvalResult``
- ``vidattn.engine.distill.teacher_from_run_dir(run_dir)`` for ``--mfr-from``

Modules: ``optim`` (param groups, ``lr_at``), ``checkpoint``, ``distributed``, ``metrics``,
``submission`` (challenge files), ``run_log`` (CSV, curves, run.json), ``builders`` (config -> objects).
"""
