"""Whether a hub id can be fetched, found before any loader asks: on a machine without network, transformers and
datasets retry for about a minute and end in a traceback; this says why in a few seconds (in the local cache, or the
hub in reach: one quick probe per process)."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from huggingface_hub import constants, get_session, snapshot_download
from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

from unlearn.models import names_local_path

PROBE_SECONDS = 3.0  # the whole probe, name lookup included (an unreachable DNS server takes far longer)


def hub_shaped(name: str) -> bool:
    """Whether `name` can only mean a hub repository: owner/name or name, and no local path that it could be."""
    return not names_local_path(name) and not Path(name).expanduser().exists()


def fetch_problems(settings: list[str], repo_id: str, repo_type: str) -> list[str]:
    """The one error for a hub id that nothing could fetch: not in the local cache, with the hub offline or out of
    reach; none when cached or when the hub answers (it then says itself whether the repository exists)."""
    if cached(repo_id, repo_type):
        return []
    if offline := offline_variable(repo_type):
        why = f"{offline}=1 keeps the hub from being asked"
    elif reason := unreachable(constants.ENDPOINT):
        why = f"the hub cannot be reached ({reason})"
    else:
        return []
    download = f"hf download {repo_id}" + (" --repo-type dataset" if repo_type == "dataset" else "")
    then = "" if offline else ", then set HF_HUB_OFFLINE=1 so that it is read from there"
    return [
        f"{', '.join(settings)}: {repo_id!r} is no local path, so it names a hub {repo_type}; {why}, and it is not "
        f"in the local cache ({constants.HF_HUB_CACHE}). Give a local folder holding it, or download it on a machine "
        f"with network (`{download}`) and copy that cache here (or point HF_HOME at it){then}"
    ]


def offline_variable(repo_type: str) -> str | None:
    """The variable that keeps the loader of a `repo_type` repository off the hub, if one does: datasets also reads
    HF_DATASETS_OFFLINE (which, when set, overrides HF_HUB_OFFLINE for it), and then fails on what its cache lacks."""
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE"
    if repo_type != "dataset":
        return None
    from datasets import config

    return "HF_DATASETS_OFFLINE" if config.HF_HUB_OFFLINE else None


def cached(repo_id: str, repo_type: str) -> bool:
    """Whether a snapshot is in the hub cache (or, for a dataset, a prepared copy in datasets' cache), which the
    loaders read without the network."""
    try:
        snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
    except IncompleteSnapshotError:
        return True  # some of its files, which may be all a loader needs (datasets fetches one config)
    except (LocalEntryNotFoundError, ValueError):  # ValueError: an id the hub would refuse, so never cached
        return repo_type == "dataset" and prepared(repo_id)
    return True


def prepared(repo_id: str) -> bool:
    """Whether datasets holds a prepared copy of a hub dataset, which it loads offline even without the hub's files."""
    from datasets import config
    from datasets.naming import camelcase_to_snakecase

    *owner, name = repo_id.split("/")
    folder = Path(config.HF_DATASETS_CACHE).expanduser() / "___".join([*owner, camelcase_to_snakecase(name)])
    return any(path.is_dir() for path in folder.glob("*/*/*"))


@functools.cache
def unreachable(endpoint: str) -> str | None:
    """Why the hub at `endpoint` does not answer within PROBE_SECONDS (None when it does); asked once per process.
    Any HTTP answer counts: it goes through huggingface_hub's own client, so proxies and HF_ENDPOINT apply."""
    answers: list[str | None] = []
    probe = threading.Thread(target=lambda: answers.append(_ask(endpoint)), daemon=True)
    probe.start()
    probe.join(PROBE_SECONDS)
    return answers[0] if answers else f"{endpoint} gave no answer within {PROBE_SECONDS:g} s"


def _ask(endpoint: str) -> str | None:
    """One HEAD request to the hub: None if anything answered, else what failed."""
    try:
        get_session().head(endpoint, timeout=PROBE_SECONDS)
    except Exception as error:  # the client's errors (httpx's) are not OSError; any failure means no answer
        return f"{endpoint}: {type(error).__name__}: {error}"
    return None
