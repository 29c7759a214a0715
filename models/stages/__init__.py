"""The stage commands (`kadn train`, `evaluate`, `blend`, `backtest`): each reads its inputs and params and calls the library layers; no stage imports another."""
