"""RM-NLHF: natural-language feedback as a process reward, and the MetaRM.

Modules (one concept each; heavy imports stay inside functions):

- :mod:`reward.nlhf.rows`       the training/eval row and the one "has a human critique" test
- :mod:`reward.nlhf.verdict`    a generation's verdict, format validity and critique text
- :mod:`reward.nlhf.arguments`  key arguments with stance, sentence-level extraction
- :mod:`reward.nlhf.f1`         core-argument F1 (repetition, fatal error, one-to-one matching)
- :mod:`reward.nlhf.matchers`   the deterministic embedding matcher (CPU default)
- :mod:`reward.nlhf.llm_judge`  the LLM-judge matcher through a reward backend
- :mod:`reward.nlhf.process`    q = 1[F1 >= 0.5], computed only when it should be
- :mod:`reward.nlhf.rewards`    RM-NLHF composite reward and P-GenRM's CRE reward
- :mod:`reward.nlhf.metarm`     the MetaRM (embedding features + small regressor)
- :mod:`reward.nlhf.metarm_lm`  the scalable MetaRM (sequence-classification head)
- :mod:`reward.nlhf.weighting`  MetaRM-weighted individual scaling
- :mod:`reward.nlhf.metrics`    inconsistency rate, F1 distribution, MetaRM agreement
- :mod:`reward.nlhf.prefeval`   PrefEval choice-based rows (user_selection = human critique)
"""
