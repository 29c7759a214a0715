"""Models: layers and nets, baselines, fitting and CV, evaluation, the backtest, scoring and forecasts."""
