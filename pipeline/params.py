"""params.yaml as typed configuration: one model per section, built and checked once when a command starts.

Every section refuses keys it does not know (with the closest known key as a hint) and values of the wrong
type, so a misspelt key fails at once in one line naming the key and the file, instead of being ignored or
failing deep inside training. Types are strict: `min_votes: 2.5`, `min_votes: true` and `keywords: [1]` are
errors, not silently converted. Fields are declared in params.yaml's order, so a section written back (into
encode's meta.json or a model's meta.json) reads as it did as a plain dict.

No field has a default: params.yaml is the one place a value is written, so a key left out is an error naming
it, never a second, silently different value (tests/test_params.py walks every section to hold this). The
only optional values are the per-net and preset overrides (`NetOverrides`), whose unset keys mean "as in
train.nets".

The file is read by a stricter YAML reader than `yaml.safe_load`: a key given twice (which YAML would let
the later one win silently) and anchors, aliases and merge keys (a 1 KB "billion laughs" file expands into
gigabytes once validated) are refused in one line naming the file and line, before anything is expanded.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import itertools
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline import groups, registry
from pipeline.errors import KadnError, RecordError
from pipeline.film.records import parse_date

NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


def _strictly_increasing(values: list) -> list:
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("must increase strictly")
    return values


def _distinct(values: list) -> list:
    if len(set(values)) < len(values):
        raise ValueError("names a value twice")
    return values


Increasing = AfterValidator(_strictly_increasing)  # a list's annotation: bin edges, years
Distinct = AfterValidator(_distinct)
REQUIRABLE = ("directors", "writers", "actors", "genres", "countries", "languages", "release_date", "runtime_min")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- clean -----------------------------------------------------------------------------------------------
class NonFilm(Section):
    genre: Annotated[str, Field(min_length=1)]
    keywords: list[Annotated[str, Field(min_length=1)]]


class CleanConfig(Section):
    date_min: str
    date_max: str
    non_film: NonFilm
    required: list[Literal[REQUIRABLE]]
    min_votes: NonNegative
    # Films released before date_min kept as training context (never validated, tested or scored).
    history: bool
    # Re-releases by id: an in-range film whose Douban id is below the median id of the films first released
    # this many years before date_min is a re-release (its subject predates the range); null: off.
    rerelease_id_years: Positive | None

    @field_validator("date_min", "date_max", mode="before")
    @classmethod
    def _date(cls, value):
        # An unquoted date in YAML arrives as a date: read it as the text it was written as.
        text = value.isoformat() if isinstance(value, dt.date) else value
        if isinstance(text, str):
            try:
                parse_date(text)
            except RecordError as exc:
                raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return text


# --- encode ----------------------------------------------------------------------------------------------
# Longest list kept per group: one key per people or list group of pipeline.groups, in its order.
MaxLen = create_model("MaxLen", __base__=Section, **{k: (Positive, ...) for k in groups.max_len_keys()})


class Split(Section):
    method: Literal["random", "time"]
    val: Fraction
    test: Fraction
    seed: NonNegative


class EncodeConfig(Section):
    max_len: MaxLen
    runtime_edges: Annotated[list[NonNegative], Field(min_length=2), Increasing]
    split: Split


# --- models ----------------------------------------------------------------------------------------------
# The names come from the one model registry (pipeline.registry, which imports no model code).
BASELINES: tuple[str, ...] = registry.BASELINES
NETS: tuple[str, ...] = registry.NETS
BaselineName = Literal[BASELINES]
NetName = Literal[NETS]


class ModelsConfig(Section):
    baselines: list[BaselineName]
    nets: list[NetName]


# --- train -----------------------------------------------------------------------------------------------
class CV(Section):
    folds: Annotated[int, Field(ge=2)]
    repeats: Positive
    seed: NonNegative
    val: Fraction


class Tune(Section):
    val: Fraction
    seed: NonNegative
    # Inner folds the grid is scored on (the mean of their validation MAEs); null: one inner split of `val`.
    folds: Annotated[int, Field(ge=2)] | None
    # Which rows the one inner split holds back: `random` (a seeded share) or `latest` (the latest-released
    # share, so a setting is judged on films later than those it learned from, as a forecast is).
    split: Literal["random", "latest"]

    @model_validator(mode="after")
    def _latest_is_one_split(self):
        if self.split == "latest" and self.folds is not None:
            raise ValueError("split latest holds back one share of the latest films: set folds to null")
        return self


class TrackRecords(Section):
    enabled: bool
    actors: Positive
    folds: Annotated[int, Field(ge=2)]
    seed: NonNegative
    counts: bool
    # Every film's track record from the source films released strictly before it (as under
    # encode.split.method: time), in every fit; false: out-of-fold over the source rows.
    earlier: bool
    # Each source film's weight in a person's mean score halves every this many years of its age
    # (models.training.recency); null: every film weighs alike.
    half_life: Annotated[float, Field(gt=0)] | None


class Common(Section):
    seed: NonNegative
    threads: Positive
    workers: Positive  # processes for the fits of `kadn train` (the fixed split's and every CV fold's)
    min_count: Positive
    cv: CV
    tune: Tune
    track_records: TrackRecords
    oov: Literal["count", "indicator", "scaled"]  # the baselines' OOV columns (models.data.multi_hot)
    # The target trend (models.trend): a line of score on release time over each fit's latest this many
    # training years, taken out of the target before fitting and added back to predictions; null: off.
    trend_years: Positive | None
    year_token: bool  # the release year as a categorical token (false: every year is the OOV id)
    # Models that read directors, writers and actors through their track records alone: in their vocabularies
    # every person is the OOV id. The others read each person as a token (an embedding or a column) too.
    records_only: Annotated[list[BaselineName | NetName], Distinct]
    # Each training film's sample weight halves every this many years of its age (models.training.recency),
    # in every model that takes sample weights; null: every film weighs alike.
    recency_half_life: Annotated[float, Field(gt=0)] | None
    # What the baselines learn from: `fit`, the nets' fit rows (the share the nets stop on left out, so every
    # model sees the same films), or `all`, every training film (a baseline stops on nothing; its grid has an
    # inner split of its own).
    baseline_rows: Literal["fit", "all"]
    # The films a fit reads its vocabularies, track records and dense statistics from: `fit`, those it learns
    # from (a net's validation share left out), or `all`, every training film (the share then only decides when
    # a net stops; its seed ensemble learns from it with rotate_val).
    sources: Literal["fit", "all"]

    def check_folds(self, films: int, smallest_fit: int | None = None) -> None:
        """Fold counts against the data a stage is about to fit: a fold without films would fail deep inside
        training, after minutes of fits. `smallest_fit`: the rows of the smallest fit that tunes a grid."""
        if self.cv.folds > films:
            raise KadnError(f"train.common.cv.folds is {self.cv.folds}, but there are only {films} films to "
                            "fold; lower it in the params file")
        if smallest_fit is not None and self.tune.folds is not None and self.tune.folds > smallest_fit:
            raise KadnError(f"train.common.tune.folds is {self.tune.folds}, but the smallest fit has only "
                            f"{smallest_fit} films; lower it in the params file")


Grid = dict[str, list[int | float | str]]


class Baseline(Section):
    """A baseline's settings; its `grid` (last, as in params.yaml) maps some of them to the values searched
    at every fit."""

    def search_grid(self) -> Grid:
        return getattr(self, "grid", {})

    def grid_settings(self) -> list[dict]:
        """Every combination of the grid (in declaration order), or [{}] with no grid."""
        grid = self.search_grid()
        keys = list(grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]

    @model_validator(mode="after")
    def _grid_keys(self):
        known = [f for f in type(self).model_fields if f != "grid"]
        for key in self.search_grid():
            if key not in known:
                raise ValueError(f"grid key {key!r} is not a setting of this model{_hint(key, known)}")
        return self

    def with_setting(self, setting: dict):
        """These settings with one grid combination in place of their own values."""
        return self.model_copy(update=setting)


class MeanConfig(Baseline):
    pass


class RidgeConfig(Baseline):
    alpha: Annotated[float, Field(gt=0)]
    grid: Grid


class SvmConfig(Baseline):
    kernel: Literal["linear", "poly", "rbf", "sigmoid"]
    C: Annotated[float, Field(gt=0)]
    epsilon: Annotated[float, Field(ge=0)]
    gamma: Literal["scale", "auto"] | Annotated[float, Field(gt=0)]
    tune_rows: Positive | None  # the grid search fits on at most this many rows (an SVR fit costs n^2)
    grid: Grid


class LightgbmConfig(Baseline):
    n_estimators: Positive
    learning_rate: Annotated[float, Field(gt=0)]
    num_leaves: Annotated[int, Field(ge=2)]
    min_child_samples: Positive
    reg_lambda: Annotated[float, Field(ge=0)]
    colsample_bytree: Annotated[float, Field(gt=0, le=1)]
    subsample: Annotated[float, Field(gt=0, le=1)]
    grid: Grid


class CatboostConfig(Baseline):
    iterations: Positive
    learning_rate: Annotated[float, Field(gt=0)]
    depth: Annotated[int, Field(ge=1, le=16)]
    l2_leaf_reg: Annotated[float, Field(ge=0)]
    loss: Literal["RMSE", "MAE"]
    # multi_hot: the other baselines' 0/1 matrix; categorical: ids as categorical columns (models.data.token_table)
    inputs: Literal["multi_hot", "categorical"]
    max_ctr_complexity: Annotated[int, Field(ge=1)] | None  # null: CatBoost's default (combinations of 4)
    grid: Grid


class Bins(Section):
    low: float
    high: float
    width: Annotated[float, Field(gt=0)]


class NetConfig(Section):
    """One neural model's settings: train.nets, then its own train.<model> keys, then the preset."""

    head: Literal["classification", "soft", "regression"]
    bins: Bins
    soft_sigma: Annotated[float, Field(gt=0)]
    regression_loss: Literal["mse", "huber", "l1"]
    huber_delta: Annotated[float, Field(gt=0)]  # the squared zone's half-width under the huber loss
    dim: Positive
    attention_hidden: Positive
    teacher: list[Positive]
    student: list[Positive]
    deepfm_hidden: list[Positive]
    dense_width: Positive
    dropout: Annotated[float, Field(ge=0, lt=1)]
    # Share of a training batch's directors, writers and actors shown to the net as unknown (OOV): films to be
    # forecast often have people the model has not seen, and this trains the nets for them.
    token_dropout: Annotated[float, Field(ge=0, lt=1)]
    linear: bool
    hint_weight: Annotated[float, Field(ge=0)]
    block_gradient: bool
    adaptive_l2: Annotated[float, Field(ge=0)]
    weight_decay: Annotated[float, Field(ge=0)]
    lr: Annotated[float, Field(gt=0)]
    lr_schedule: Literal["constant", "cosine"]  # cosine: lr -> 0 over `epochs`, per batch
    batch: Positive
    epochs: Positive
    evals_per_epoch: Positive
    # At most this many optimiser steps between validations (more per epoch on large sets); null: off.
    eval_steps: Positive | None
    patience: Positive | None  # validations without improvement before stopping; null: never stop
    seeds: Positive
    # Each seed after the first validates on its own seeded share of the fit's rows (as many as the first's
    # validation rows) and trains on the rest, so a seed ensemble learns from every training row.
    rotate_val: bool
    preset: str  # last: a resolved configuration lists it after the settings it chose


def _overrides(model: type[BaseModel], name: str) -> type[BaseModel]:
    """A section that may set any key of `model`, each optional (a model's own keys, a preset)."""
    fields = {}
    for key, field in model.model_fields.items():
        info = copy.copy(field)
        info.default = None
        fields[key] = (field.annotation | None, info)
    return create_model(name, __base__=Section, **fields)


NetOverrides = _overrides(NetConfig, "NetOverrides")


class _Train(Section):
    """`train`: `common`, each baseline's settings (its class in the registry), `nets`, each net's own keys
    (NetOverrides) and the presets; the model fields are made from `pipeline.registry` (`TrainConfig`)."""

    @field_validator(*(n for n in registry.NAMES if registry.MODELS[n].config in ("MeanConfig", "NetConfig")),
                     mode="before", check_fields=False)
    @classmethod
    def _empty(cls, value):
        return {} if value is None else value  # `kadn:` with nothing under it

    @model_validator(mode="after")
    def _resolvable(self):
        for name in ("nets",) + NETS:
            preset = getattr(self, name).preset
            if preset is not None and preset != "tuned" and preset not in self.presets:
                raise ValueError(f"{name}.preset {preset!r} is not one of tuned, {', '.join(self.presets)}")
        for name in NETS:
            try:
                self.net(name)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"{name} with its preset: {where}: {err['msg']}") from None
        return self

    def baseline(self, name: str) -> Baseline:
        return getattr(self, name)

    def net(self, name: str) -> NetConfig:
        """train.nets, then train.<name>, then the chosen preset on top."""
        merged = {**self.nets.model_dump(), **getattr(self, name).model_dump(exclude_unset=True)}
        preset = merged.pop("preset")
        if preset != "tuned":
            merged.update(self.presets[preset].model_dump(exclude_unset=True))
        return NetConfig.model_validate({**merged, "preset": preset})


def _model_field(name: str):
    cls = globals()[registry.MODELS[name].config]
    return (NetOverrides if cls is NetConfig else cls, ...)  # type: ignore[valid-type]


TrainConfig = create_model(
    "TrainConfig", __base__=_Train, common=(Common, ...),
    **{n: _model_field(n) for n in registry.BASELINES}, nets=(NetConfig, ...),
    **{n: _model_field(n) for n in registry.NETS}, presets=(dict[str, NetOverrides], ...))  # type: ignore[valid-type]


# --- evaluate --------------------------------------------------------------------------------------------
class EvaluateConfig(Section):
    timing_repeats: Positive
    timing_films: Positive


# --- forecast --------------------------------------------------------------------------------------------
class ForecastConfig(Section):
    """Prediction intervals (read by `kadn evaluate` and `kadn forecast`): split-conformal on out-of-fold
    residuals, one residual quantile per bin of the share of a film's people the model knows."""

    level: Fraction
    known_edges: Annotated[list[Fraction], Increasing]  # inner edges of the known-share bins
    min_bin: Positive  # fewer calibration residuals in a bin: it merges with its neighbour


# --- backtest --------------------------------------------------------------------------------------------
class BacktestConfig(Section):
    # auto: the last `last` years holding `min_films` films with `calibration_years` such years before them
    years: Annotated[list[Annotated[int, Field(ge=1888, le=2100)]], Field(min_length=1), Increasing] | Literal[
        "auto"]
    last: Positive
    min_films: Positive
    # Years before the first reported one, fitted and scored too: their forward residuals calibrate the
    # first reported year's intervals and fit its blend weights (later years add every earlier year's).
    calibration_years: Positive
    models: Annotated[list[BaselineName | NetName], Field(min_length=1)]
    seeds: Positive | None  # per net and year; null: each net's own seeds (train.nets.seeds), as shipped


# --- blend -----------------------------------------------------------------------------------------------
ReportedName = Literal[tuple(registry.REPORTED)]


class BlendConfig(Section):
    members: Annotated[list[ReportedName], Field(min_length=2)]
    loss: Literal["squared", "absolute"]  # what the stacking weights minimise
    # What the saved weights are fitted on: the members' forward predictions in the backtest's forward.npz (every
    # member must then be in backtest.models; `kadn blend` says so), or their random-CV out-of-fold ones.
    weights: Literal["forward", "out_of_fold"]
    # Forward weights only: the intercept re-centred on the residuals of the latest this many fitted years (the
    # members' weights still from every year); null: fitted with the weights on every year.
    intercept_years: Positive | None


class Params(Section):
    clean: CleanConfig
    encode: EncodeConfig
    models: ModelsConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    forecast: ForecastConfig
    backtest: BacktestConfig
    blend: BlendConfig


def _hint(key: str, known) -> str:
    if not known:
        return "; this section takes no keys"
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(map(str, known))}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _known_at(loc: tuple) -> list[str]:
    """The keys the section at `loc` (a path into Params) accepts."""
    model: type[BaseModel] = Params
    for part in loc:
        if model is TrainConfig and part == "presets":
            model = NetOverrides
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
    return list(model.model_fields)


def parse(data, where: str | Path = "params.yaml") -> Params:
    """Params from a loaded params.yaml, or a KadnError naming the file and the first bad key."""
    if not isinstance(data, dict):
        raise KadnError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # A union's member tags (`function-after[...]`, `literal['auto']`) are no keys of the file.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        key = ".".join(str(p) for p in loc) or "(top)"
        if err["type"] == "extra_forbidden":
            raise KadnError(f"{where}: unknown key {key}{_hint(loc[-1], _known_at(loc[:-1]))}") from None
        if err["type"] == "missing":
            raise KadnError(f"{where}: missing key {key}") from None
        message = err["msg"].removeprefix("Value error, ")
        shown = "" if err["type"] in ("value_error", "assertion_error") else f", not {_short(err['input'])}"
        raise KadnError(f"{where}: {key}: {message}{shown}") from None


class _Refused(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


class _ParamsLoader(yaml.SafeLoader):
    """SafeLoader without anchors, aliases or merge keys, and refusing a key given twice in one mapping."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        # Checked on the parser's events: an alias is refused before it can be expanded into anything.
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark.line + 1, "YAML anchors and aliases (& and *) are not allowed in "
                           "params; write each value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        lines: dict = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(line, "YAML merge keys (<<) are not allowed in params; write each key out")
            key = self.construct_object(key_node, deep=True)
            try:
                if key in lines:
                    raise _Refused(line, f"key {_short(key)} given twice (lines {lines[key]} and {line})")
                lines[key] = line
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error names it
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict:
    """params.yaml as plain data, read by `_ParamsLoader`; every problem is a one-line KadnError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KadnError(f"{path}: no such file (run from the repository root or pass --params)") from None
    except UnicodeDecodeError:
        raise KadnError(f"{path}: not UTF-8 text") from None
    loader = _ParamsLoader(text)
    try:
        return loader.get_single_data() or {}
    except _Refused as exc:
        raise KadnError(f"{path}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise KadnError(f"{where}: not valid YAML ({' '.join(str(exc.problem or exc.context).split())})") from None
    except yaml.YAMLError as exc:
        raise KadnError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise KadnError(f"{path}: nested too deeply to read") from None
    finally:
        loader.dispose()


def load(path: str | Path = "params.yaml") -> Params:
    return parse(read_yaml(path), path)
