"""`SnapshotEnsemble`: M snapshots of one SGDR run used as one model.

Two ways in: the incremental API (`SnapshotEnsemble(max_snapshots=5)`, `add_model(model)` after each cycle,
`predict(dataloader)`) and the Hugging Face one (`from_pretrained` a snapshot folder or Hub repo,
`save_pretrained`, `push_to_hub`). Members loaded from folders stay on the compute device as far as the
residency budget allows (by default on CUDA half its free memory, on CPU none); the others, and the CPU
copies of `add_model`, are computed one at a time in a single module. See `runners` and `residency`; where
loaded members come from: `sources`; where a saved or pushed ensemble goes: `publishing`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import check_output_file
from ..schedule import SGDRSchedule
from ..snapshot_format.layout import snapshot_name
from ..snapshot_format.loading import (
    device_load_options,
    load_model,
    load_state_dict,
    read_ahead,
)
from ..snapshot_format.manifest import (
    ModelDescription,
    SnapshotManifest,
    SnapshotRecord,
    check_relative_name,
    new_manifest,
)
from ..snapshot_format.members import Member, check_full_members
from ..snapshot_format.model_description import describe_model, is_peft_model
from ..snapshot_format.tensors import cpu_copy, cpu_module_copy
from ..validation import check_int
from .combine import combine, fit_weights, normalize_weights
from .evaluation import EvaluationReport, run_evaluation
from .metric_suite import MetricSpec, MetricSuite
from .outputs import collect_member_outputs, materialize
from .prediction import EnsemblePrediction
from .residency import Budget, check_residency_budget
from .runners import AdapterRunner, ModelRunner, StateDict, copy_state
from .sources import EnsembleMember, MemberFolders, checkpoint_folders, snapshot_folders
from .tasks import task_kind
from .tasks.base import TaskKind
from .tasks.registry import DEFAULT_KIND, kind_of_model

logger = logging.getLogger(__name__)


def _kind_of(auto_class: str | None, config: Any) -> TaskKind:
    """The kind of the outputs of models of `auto_class` with this config (`registry.kind_of_model`)."""
    return task_kind(
        kind_of_model(auto_class, getattr(config, "num_labels", None), getattr(config, "problem_type", None))
    )


class SnapshotEnsemble:
    """An ensemble of snapshots (the weights at the end of each SGDR cycle).

    Args:
        max_snapshots: Keep at most this many (the most recent) snapshots added with `add_model`.
        tokenizer: Saved with the ensemble and exposed as `.tokenizer`.
        task: Task name (a GLUE name such as "sst2" selects the GLUE metrics).
        kind: A task kind's name (`tasks.kind_names()`: "classification", "regression", "causal_lm",
            "token_classification", "multiple_choice") or a `TaskKind`; inferred from the models when None.
        schedule: The SGDR schedule that produced the snapshots (`SGDRSchedule` or its `to_dict()`).
        training: Free-form training facts recorded in the manifest (dataset, learning rate, budget, ...).
        device: Compute device (default: CUDA if available, else CPU).
        progress: Show progress bars (on the main process only; transformers' per-member loading bars never).
        residency_budget: Device memory the members loaded from folders may occupy together, so that they are
            loaded once for every row and split: None (default) for half the free CUDA memory (none on CPU:
            one member at a time), an int of bytes, or a float share in (0, 1] of the free CUDA memory. See
            `residency`; `resident_models_peak` and the report say how many models were resident.
    """

    def __init__(
        self,
        max_snapshots: int = 5,
        *,
        tokenizer: Any = None,
        task: str | None = None,
        kind: str | TaskKind | None = None,
        schedule: SGDRSchedule | dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
        residency_budget: Budget = None,
    ) -> None:
        self.max_snapshots = check_int("max_snapshots", max_snapshots, minimum=1)
        self.tokenizer = tokenizer
        self.task = task
        self.schedule = schedule.to_dict() if isinstance(schedule, SGDRSchedule) else schedule
        self.training = dict(training or {})
        self.device = torch.device(device) if device is not None else _default_device()
        self.progress = progress
        self.residency_budget = check_residency_budget(residency_budget)
        self.snapshot_type: str | None = None
        self.auto_class: str | None = None
        self.base_model: str | None = None
        self.source: Path | None = None
        self.last_report: EvaluationReport | None = None
        #: The library versions the snapshots were trained with (from the loaded manifest); None: this process's.
        self.library_versions: dict[str, str] | None = None
        self._kind = None if kind is None else task_kind(kind)
        self._model_kwargs: dict[str, Any] = {}
        self._members: list[EnsembleMember] = []
        self._runner: ModelRunner | AdapterRunner | None = None
        self._template: nn.Module | None = None  # the module that add_model's CPU copies are loaded into

    # ------------------------------------------------------------------ introspection
    @property
    def num_snapshots(self) -> int:
        """How many snapshots the ensemble holds."""
        return len(self._members)

    @property
    def snapshot_names(self) -> list[str]:
        """The snapshots' names, oldest first."""
        return [member.record.name for member in self._members]

    @property
    def records(self) -> list[SnapshotRecord]:
        """The snapshots' manifest records (cycle, steps, lr, metrics), oldest first."""
        return [member.record for member in self._members]

    @property
    def kind(self) -> str:
        """What the outputs are: the name of `task_kind`."""
        return self.task_kind.name

    @property
    def task_kind(self) -> TaskKind:
        """The kind of the outputs (classification until a model says otherwise), which collects and combines them."""
        return self._kind or task_kind(DEFAULT_KIND)

    @property
    def resident_models_peak(self) -> int:
        """Most model-sized weight sets alive at once during this ensemble's computations (see `runners`)."""
        return 0 if self._runner is None else self._runner.tracker.peak

    def __repr__(self) -> str:
        return (
            f"SnapshotEnsemble({self.num_snapshots} {self.snapshot_type or 'empty'} snapshots, kind={self.kind}, "
            f"max_snapshots={self.max_snapshots}, device={self.device})"
        )

    # ------------------------------------------------------------------ incremental API (add_model)
    def add_model(
        self,
        model: nn.Module,
        *,
        name: str | None = None,
        cycle: int | None = None,
        global_step: int = 0,
        scheduler_step: int = 0,
        epoch: float | None = None,
        lr: Sequence[float] = (),
        train_loss: float | None = None,
        eval_metrics: dict[str, float] | None = None,
    ) -> SnapshotRecord:
        """Add a snapshot: a CPU copy of `model`'s weights (of its adapter, for a PEFT model).

        The oldest snapshot is dropped beyond `max_snapshots`. The model itself is left untouched. The copies
        live in CPU memory (K models for full-model snapshots); for large models write the snapshots to disk
        during training and use `from_pretrained`, which keeps at most two models in memory.
        """
        cycle = (self._members[-1].record.cycle + 1 if self._members else 0) if cycle is None else cycle
        name = check_relative_name(name or snapshot_name(cycle), "name")
        if name in self.snapshot_names:
            raise ValueError(f"name {name!r} is already a snapshot of this ensemble; pass another name")
        record = SnapshotRecord(
            name,
            cycle,
            global_step,
            scheduler_step,
            epoch,
            [float(x) for x in lr],
            train_loss,
            dict(eval_metrics) if eval_metrics else None,
        )
        if is_peft_model(model):
            self._add_adapter(model, record)
        else:
            self._add_full_model(model, record)
        while len(self._members) > self.max_snapshots:
            dropped = self._members.pop(0)
            if isinstance(self._runner, AdapterRunner):
                self._runner.model.delete_adapter(dropped.record.name)
            logger.info(
                "max_snapshots=%d reached: dropped the oldest snapshot %s", self.max_snapshots, dropped.record.name
            )
        return record

    def _claim(self, model: nn.Module) -> None:
        """Take the manifest header from the first model added; refuse a model of the other snapshot type."""
        description = describe_model(model)
        if self.snapshot_type not in (None, description.snapshot_type):
            raise ValueError(
                f"this ensemble holds {self.snapshot_type} snapshots; cannot add a {description.snapshot_type}"
            )
        self.snapshot_type = description.snapshot_type
        self.auto_class = self.auto_class or description.auto_class
        self.base_model = self.base_model or description.base_model
        if self._kind is None:
            self._kind = _kind_of(self.auto_class, getattr(model, "config", None))

    def _add_full_model(self, model: nn.Module, record: SnapshotRecord) -> None:
        self._claim(model)
        if self._template is None:
            self._template = cpu_module_copy(model)
        if self._runner is None:  # the CPU copies share one module: none stays resident
            self._runner = self._model_runner(resident=False)
        self._members.append(EnsembleMember(record, state=cpu_copy(model.state_dict())))

    def _add_adapter(self, model: nn.Module, record: SnapshotRecord) -> None:
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        self._claim(model)
        adapter = model.active_adapter
        if self._runner is None:
            self._runner = AdapterRunner(cpu_module_copy(model), lambda: self.snapshot_names, self.device)
        holder = self._runner.model
        holder.add_adapter(record.name, model.peft_config[adapter])
        set_peft_model_state_dict(holder, cpu_copy(get_peft_model_state_dict(model, adapter_name=adapter)), record.name)
        self._members.append(EnsembleMember(record))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike[str],
        revision: str | None = None,
        *,
        snapshots: Sequence[str] | int | None = None,
        device: str | torch.device | None = None,
        base_model: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        endpoint: str | None = None,
        force_download: bool = False,
        progress: bool = True,
        residency_budget: Budget = None,
        **model_kwargs: Any,
    ) -> SnapshotEnsemble:
        """Load an ensemble from a snapshot folder (or a training output folder holding `snapshots/`) or a Hub repo.

        Args:
            path_or_repo_id: Local folder, or Hub repo id (downloaded with `huggingface_hub`, which honours
                `HF_HUB_OFFLINE` and the cache).
            revision: Hub branch, tag or commit (Hub repos only).
            force_download: Fetch the Hub files again even when the cache holds them, e.g. after a corrupt-file
                error (Hub repos only).
            snapshots: A snapshot's name, a list of names, or an int n for the last n (default: all).
            base_model: Base model of PEFT snapshots (default: the manifest's).
            residency_budget: Device memory the members may occupy together (see the class docstring).
            model_kwargs: Passed to `from_pretrained` of the models (e.g. `dtype=torch.bfloat16`).

        Every selected snapshot is verified first (paths, safetensors only, sizes, checksums, headers), the
        snapshots in parallel threads.
        """
        folders, manifest = snapshot_folders(
            path_or_repo_id,
            revision,
            snapshots,
            base_model,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
            force_download=force_download,
        )
        return cls._from_folders(
            folders,
            model_kwargs,
            task=manifest.task,
            schedule=manifest.schedule,
            training=manifest.training,
            device=device,
            progress=progress,
            residency_budget=residency_budget,
        )

    @classmethod
    def from_trainer(cls, trainer: Any, **kwargs: Any) -> SnapshotEnsemble:
        """The snapshots of an `SGDRTrainer` run (or of a stock `Trainer` with an `SGDRCallback`), on the Trainer's
        device; `kwargs` as for `from_pretrained`."""
        from ..training.callback import SGDRCallback

        options = SGDRCallback.installed_in(trainer).options
        folder = options.snapshot_folder(trainer.args.output_dir)
        if folder is None:
            raise ValueError("SnapshotEnsemble.from_trainer needs snapshots; this run has save_snapshots=False")
        defaults = {"device": trainer.args.device, "progress": not trainer.args.disable_tqdm}
        return cls.from_pretrained(folder, **{**defaults, **kwargs})

    @classmethod
    def from_checkpoints(
        cls,
        output_dir: str | os.PathLike[str],
        *,
        checkpoints: Sequence[str] | int | None = None,
        task: str | None = None,
        auto_class: str | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
        residency_budget: Budget = None,
        **model_kwargs: Any,
    ) -> SnapshotEnsemble:
        """An ensemble of any `Trainer` run's `checkpoint-*` folders (e.g. a `cosine` run with `save_steps`).

        Args:
            output_dir: The run's output_dir, holding `checkpoint-<step>/` folders (taken in step order).
            checkpoints: A checkpoint's name, a list of names, or an int n for the last n (default: all).
            task: Task name for the metrics (a GLUE name selects the GLUE metrics).
            auto_class: `AutoModelForSequenceClassification` or `AutoModelForCausalLM` (default: from the
                architecture in the first checkpoint's config.json).
            residency_budget: Device memory the members may occupy together (see the class docstring).
            model_kwargs: Passed to `from_pretrained` of the models.

        Safetensors only, under the snapshot folders' rules (see `checkpoints`); the tokenizer is the last
        checkpoint's, else output_dir's. The same `predict` / `evaluate` then compares the checkpoints with
        SGDR snapshots; `save_pretrained` writes them as a snapshot folder.
        """
        return cls._from_folders(
            checkpoint_folders(output_dir, checkpoints, auto_class),
            model_kwargs,
            task=task,
            device=device,
            progress=progress,
            residency_budget=residency_budget,
        )

    @classmethod
    def _from_folders(cls, folders: MemberFolders, model_kwargs: dict[str, Any], **options: Any) -> SnapshotEnsemble:
        """The one way to an ensemble of verified folders (`from_pretrained`, `from_checkpoints`): constructed with
        `options` and the folders' tokenizer, then given its members."""
        ensemble = cls(max(1, len(folders.members)), tokenizer=folders.tokenizer, **options)
        ensemble._attach(folders, model_kwargs)
        return ensemble

    def _attach(self, folders: MemberFolders, model_kwargs: dict[str, Any]) -> None:
        """Take `folders`' members and header; check full models as one model (or load the adapters on their base),
        and take the kind of outputs from their config."""
        self.snapshot_type = folders.snapshot_type
        self.auto_class = folders.auto_class
        self.base_model = folders.base_model
        self.source = folders.source
        self.library_versions = folders.library_versions
        self._model_kwargs = model_kwargs
        self._members = folders.members
        if not self._members:
            return
        if self.snapshot_type == "full_model":
            members = [Member(m.record.name, m.folder, m.record.files) for m in self._members]
            config = check_full_members(members, self.auto_class)
            self._runner = self._model_runner()
        else:
            from .adapters import load_adapter_model

            model = load_adapter_model(
                [m.folder for m in self._members], self.snapshot_names, self.auto_class, self.base_model, **model_kwargs
            )
            self._runner = AdapterRunner(model, lambda: self.snapshot_names, self.device)
            config = model.get_base_model().config
        self._kind = _kind_of(self.auto_class, config)

    def _model_runner(self, *, resident: bool = True) -> ModelRunner:
        """The runner of full-model members (`resident=False`: none kept on the device)."""
        return ModelRunner(
            self._load_module,
            self._load_state,
            self._prefetch_member,
            self.device,
            budget=self.residency_budget if resident else 0,
            members=lambda: self.num_snapshots,
        )

    def _load_module(self, index: int, writable: bool) -> nn.Module:
        """Member `index` as a module: the template holding its CPU copy, or its verified folder loaded.

        `writable` loads without memory-mapping: a soup is accumulated in that module, and writing into a
        private file mapping would keep the file's pages resident on top of the written ones.
        """
        member = self._members[index]
        if member.state is not None:
            copy_state(self._template, member.state)
            return self._template
        direct = device_load_options(self.device, self._model_kwargs)
        options = {**direct, **self._model_kwargs}
        if writable and not direct:  # loaded onto the device, the module holds no file mapping to write into
            options["disable_mmap"] = True
        module = load_model(member.folder, self.auto_class, **options)
        self._runner.tracker.count_load()
        return module

    def _load_state(self, index: int) -> StateDict:
        """Member `index`'s weights: its CPU copy, or its verified folder read through `from_pretrained`."""
        member = self._members[index]
        if member.state is not None:
            return member.state
        state = load_state_dict(member.folder, self.auto_class, **self._model_kwargs)
        self._runner.tracker.track(state)
        self._runner.tracker.count_load()
        return state

    def _prefetch_member(self, index: int) -> None:
        """Read member `index`'s files ahead of time (page cache), so loading it does not wait for the disk."""
        member = self._members[index]
        if member.folder is not None:
            read_ahead(member.folder, member.record.files)

    # ------------------------------------------------------------------ prediction
    def _require_members(self) -> ModelRunner | AdapterRunner:
        if not self._members or self._runner is None:
            raise ValueError("the ensemble has no snapshots: add_model() or from_pretrained() first")
        return self._runner

    def predict(
        self,
        dataloader: Iterable[Mapping[str, torch.Tensor]],
        method: str = "average",
        weights: Sequence[float] | None = None,
        *,
        selection_dataloader: Iterable[Mapping[str, torch.Tensor]] | None = None,
    ) -> EnsemblePrediction:
        """Combine every snapshot's outputs on `dataloader` with `method`.

        Methods: classification "average" (mean of probabilities), "logits" (mean of logits), "vote",
        "weighted" (mean of probabilities with `weights`, or weights fitted on `selection_dataloader`);
        regression "average"/"weighted" (mean prediction); causal LM "average"/"weighted" (mixture of the
        token probabilities: the ensemble's likelihood and perplexity).
        """
        runner = self._require_members()
        kind = self.task_kind
        kind.check_method(method)
        fit = method == "weighted" and weights is None
        if fit and selection_dataloader is None:
            raise ValueError("method='weighted' needs weights=[...] or a selection_dataloader to fit them on")
        batch_sets = [materialize(dataloader)]
        if fit:
            batch_sets.append(materialize(selection_dataloader))
        outputs = collect_member_outputs(runner, range(self.num_snapshots), batch_sets, kind, progress=self.progress)
        if fit:
            weights = fit_weights(outputs[1], batch_sets[1].targets(kind), kind)
        combined = combine(outputs[0], kind, method, weights)
        used = normalize_weights(weights if method == "weighted" else None, self.num_snapshots).tolist()
        return EnsemblePrediction(
            kind.name,
            self.task,
            method,
            self.snapshot_names,
            used,
            combined.scores,
            combined.predictions,
            batch_sets[0].targets(kind),
            outputs[0],
            combined.probabilities,
        )

    def evaluate(
        self,
        eval_dataloader: Iterable[Mapping[str, torch.Tensor]],
        selection_dataloader: Iterable[Mapping[str, torch.Tensor]] | None = None,
        *,
        metrics: MetricSpec | Sequence[MetricSpec] | None = None,
        method: str = "average",
        soups: bool = True,
        eval_split: str = "eval",
        selection_split: str = "selection",
        selection_metric: str | None = None,
        temperature_scaling: bool = False,
        dataset: str | None = None,
        json_path: str | os.PathLike[str] | None = None,
        print_table: bool = False,
    ) -> EvaluationReport:
        """Report every snapshot alone, the ensemble of the last k for every k, and the soups.

        Classification is scored on accuracy-type metrics and on the probabilities (NLL, Brier, ECE with 15
        bins) by default; every ensemble row carries its members' disagreement and its gain over the mean
        member. With `selection_dataloader` (a split other than the reported one), also the best single
        snapshot, greedy soup, greedy ensemble selection and fitted weights, all chosen on it by
        `selection_metric` (default: the first metric; "nll" targets the probabilities) and reported on
        `eval_dataloader`; `temperature_scaling=True` adds every snapshot and last-k ensemble with a
        temperature fitted on the selection split. `metrics` takes built-in names (the default, offline), an
        `evaluate` module (`evaluate.load(...)`), a `compute_metrics` function as the `Trainer`'s, or a list
        mixing them (see `metric_suite`).
        """
        runner = self._require_members()
        if json_path is not None:
            check_output_file(json_path, "json_path")  # before the work, not after it
        if selection_dataloader is not None and (
            selection_dataloader is eval_dataloader or selection_split == eval_split
        ):
            raise ValueError(
                f"selection_dataloader must be a different split from the reported one (eval_split={eval_split!r}, "
                f"selection_split={selection_split!r}); choosing on the reported split overstates the results"
            )
        kind = self.task_kind
        suite = MetricSuite(kind, self.task, metrics)
        kind.check_method(method)
        eval_batches = materialize(eval_dataloader)
        selection_batches = None if selection_dataloader is None else materialize(selection_dataloader)
        rows = run_evaluation(
            runner,
            self.snapshot_names,
            kind,
            eval_batches,
            selection_batches,
            suite,
            method=method,
            soups=soups,
            selection_metric=selection_metric,
            temperature_scaling=temperature_scaling,
            progress=self.progress,
        )
        labels = eval_batches.targets(kind)
        report = EvaluationReport(
            kind=kind.name,
            method=method,
            metrics=suite.keys,
            eval_split=eval_split,
            selection_split=None if selection_batches is None else selection_split,
            task=self.task,
            dataset=dataset or self.training.get("dataset_name"),
            num_eval_items=0 if labels is None else len(labels),
            resident_models_peak=runner.tracker.peak,
            rows=rows,
        )
        self.last_report = report
        if json_path is not None:
            report.save_json(json_path)
        if print_table:
            print(report.to_table())
        return report

    # ------------------------------------------------------------------ saving and pushing
    def manifest(self, records: Sequence[SnapshotRecord] | None = None) -> SnapshotManifest:
        """The root config of this ensemble (what `save_pretrained` writes as manifest.json).

        A loaded ensemble keeps the provenance of its manifest (`library_versions` of the training run).
        """
        header = ModelDescription(self.snapshot_type or "full_model", self.auto_class, self.base_model, self.task)
        return new_manifest(
            header,
            schedule=self.schedule,
            training=self.training,
            snapshots=records or self.records,
            trained_with=self.library_versions or None,
        )

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        report: EvaluationReport | None = None,
        dataset: str | None = None,
        repo_id: str | None = None,
    ) -> Path:
        """Write the snapshot folder: one subfolder per snapshot, tokenizer, schedule plot, model card, manifest.

        The folder is written whole under a temporary name beside `save_directory` and then takes its place in
        one step, so that a kill or an error at any moment leaves the old folder or the new one, never a mix
        (`destination`: a non-empty folder that is no ensemble is refused; an old ensemble folder may be the one
        this ensemble was loaded from, and what it holds besides the ensemble is kept).
        `report` (default: the last `evaluate`) fills the card's results table. The work: `publishing`.
        """
        from .publishing import save_ensemble

        self._require_members()
        return save_ensemble(
            save_directory,
            [(member.record, self._member_writer(member)) for member in self._members],
            self.manifest,
            tokenizer=self.tokenizer,
            report=report or self.last_report,
            dataset=dataset,
            repo_id=repo_id,
        )

    def _member_writer(self, member: EnsembleMember) -> Callable[[Path], None]:
        """How `member` is written into a snapshot folder: its verified folder's files copied, its adapter saved,
        or its CPU copy saved through the template."""
        from .publishing import copy_member_files, save_full_model

        if member.folder is not None:
            return partial(copy_member_files, member.folder, member.record)
        if isinstance(self._runner, AdapterRunner):
            from .adapters import save_adapter

            return partial(save_adapter, self._runner.model, member.record.name)
        return partial(save_full_model, self._template, member.state)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        create_pr: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        endpoint: str | None = None,
        report: EvaluationReport | None = None,
        dataset: str | None = None,
    ) -> Any:
        """Upload the ensemble to `repo_id` in one commit (create_repo, then create_commit) with a fresh model card.

        An ensemble loaded from a folder is pushed from that folder, in place, with its manifest's provenance
        (`hub.push_folder`, the path `hf-sgdr push` takes); one holding models added in memory is saved to a
        temporary folder first. `report` (default: the last `evaluate`) fills the card's results table.
        The token comes from `token`, else `HF_TOKEN` or the stored login; it is never logged or written.
        Returns huggingface_hub's `CommitInfo`. The work: `publishing`.
        """
        from .publishing import push_ensemble

        self._require_members()
        loaded = self.source is not None and all(m.folder == self.source / m.record.name for m in self._members)
        report = report or self.last_report
        return push_ensemble(
            repo_id,
            source=self.source if loaded else None,
            manifest=self.manifest,
            save=partial(self.save_pretrained, report=report, dataset=dataset, repo_id=repo_id),
            report=report,
            dataset=dataset,
            private=private,
            commit_message=commit_message,
            commit_description=commit_description,
            create_pr=create_pr,
            revision=revision,
            token=token,
            endpoint=endpoint,
        )


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
