"""The offline Lmk2Video sampler: closed-loop context windows, CFG, DDIM; `exact` reproduces the official code."""
