"""Trained models on disk and what reads them: model folders, scoring, forecasts, explanations, the scorecard, tables and figures."""
