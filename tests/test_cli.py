"""The CLI as a user meets it, in fresh interpreters: one-line errors with the right exit code and no traceback (unless
-v), nothing of diffusers or transformers imported where nothing needs them, `env`, and `pipe.enable_gna` whichever
package is imported first."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gna_diffusers.cli import exit_code_for
from gna_diffusers.errors import MissingWeightsError

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("diffusers", "transformers")


def fresh(*args: str, code: str = "", env: dict = None) -> subprocess.CompletedProcess:
    """`python -m gna_diffusers ARGS`, or `python -c CODE`, in a fresh interpreter importing this checkout."""
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "gna_diffusers", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gna-diffusers: error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.mark.parametrize("args,code,needles", [
    (["recipe", "check", "nonexistent"], 2, ["'nonexistent'", "shipped: "]),                     # bad recipe
    (["generate", "--recipe", "nonexistent"], 2, ["'nonexistent'"]),
    (["simulate", "--grid", "3xa", "--window", "2x2"], 2, ["--grid", "'3xa'", "simulate --help"]),  # bad argument
    (["generate", "--frobnicate"], 2, ["--frobnicate"]),
    (["generate", "--steps", "0"], 2, ["--steps", "give 1 or more"]),
    (["compare", "--prompts", "no/such/prompts.txt"], 2, ["--prompts no/such/prompts.txt", "no such file"]),
    (["compare", "--fp8", "--cache", "taylor_seer_lite"], 2, ["--fp8, --cache: only with --whole-pipeline"]),
    (["simulate", "--grid", "8x8", "--window", "9x9"], 2, ["window=(9, 9)", "<= grid length 8"]),  # our validation
    (["simulate"], 2, ["--grid", "--shipped"]),
    ([], 2, ["COMMAND"]),
])
def test_user_errors_are_one_line(args, code, needles) -> None:
    assert_one_line_error(fresh(*args), code, *needles)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU-only options run on this machine")
def test_gpu_only_options_without_a_gpu() -> None:
    assert_one_line_error(fresh("compare", "--random-weights", "flux"), 1, "--random-weights", "CUDA GPU")
    assert_one_line_error(fresh("generate", "--device", "cuda"), 1, "--device cuda", "no CUDA GPU")
    assert_one_line_error(fresh("generate", "--gpus", "2"), 1, "--gpus 2", "this machine has 0")
    assert_one_line_error(fresh("compare", "--whole-pipeline", "hunyuan_video", "--fp8"), 1, "--fp8",
                          "compute capability 8.9", "found no CUDA GPU")


def test_whole_pipeline_names_are_the_specs() -> None:
    from gna_diffusers.whole_pipeline import PIPELINES
    assert_one_line_error(fresh("compare", "--whole-pipeline", "wan", "no_such_model"), 2,
                          "--whole-pipeline no_such_model: not one of", *PIPELINES)
    if not torch.cuda.is_available():                    # every spec's name is accepted: on to the GPU check
        assert_one_line_error(fresh("compare", "--whole-pipeline", *PIPELINES), 1, "--whole-pipeline", "CUDA GPU")


def test_missing_weights_say_what_to_do(tmp_path) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    line = assert_one_line_error(fresh("generate", "--model", "gna-diffusers-test/no-such-model", env=env), 1,
                                 "gna-diffusers-test/no-such-model", "not on this machine",
                                 "hf download gna-diffusers-test/no-such-model", "--download", "local")
    assert str(tmp_path / "hf") in line                                       # where it looked
    assert_one_line_error(fresh("compare", "--model", "gna-diffusers-test/no-such-model", env=env), 1,
                          "not on this machine")
    assert_one_line_error(fresh("generate", "--model", "gna-diffusers-test/no-such-model", "--download", env=env),
                          1, "HF_HUB_OFFLINE")


def test_a_folder_that_is_not_a_pipeline(tmp_path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(b"")
    assert_one_line_error(fresh("generate", "--model", str(tmp_path)), 1, str(tmp_path), "model_index.json")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                           "unet": ["diffusers", "UNet2DConditionModel"]}))
    assert_one_line_error(fresh("generate", "--model", str(tmp_path)), 2, "has no transformer",
                          "FluxTransformer2DModel")


def test_verbose_shows_the_traceback() -> None:
    for args in (["-v", "recipe", "check", "nonexistent"], ["recipe", "check", "nonexistent", "-v"]):
        result = fresh(*args)
        assert result.returncode == 2
        assert "Traceback" in result.stderr and "RecipeError" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("gna-diffusers: error: recipe 'nonexistent'")


def test_bugs_keep_their_traceback() -> None:
    """Only `raise` statements of our validation (or UserError) are user errors; a failing operation is a bug."""
    from gna_diffusers import GNAParams, load_recipe

    def caught(fn) -> BaseException:
        try:
            fn()
        except Exception as err:
            return err
        raise AssertionError("no exception")

    assert exit_code_for(caught(lambda: GNAParams.make((8, 8), 9))) == 2
    assert exit_code_for(MissingWeightsError("x")) == 1
    recipe = load_recipe({"model": "flux", "grid": [16, 16], "dense_steps": 0.5,
                          "layers": [{"blocks": "all", "window": 2}]})
    assert exit_code_for(caught(lambda: recipe.dense_step_count("many"))) is None    # TypeError inside our code
    assert exit_code_for(caught(lambda: json.loads("{"))) is None                     # ValueError of a library
    assert exit_code_for(caught(lambda: torch.zeros(2) @ torch.zeros(3))) is None


MODULES = "import sys; print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'transformers', " \
          "'gna_diffusers.models') if m in sys.modules)))"


def imported(code: str) -> list[str]:
    result = fresh(code=f"import json\n{code}\n{MODULES}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_and_light_commands_leave_diffusers_out() -> None:
    assert imported("import gna_diffusers") == []
    assert imported("import gna_diffusers as g\ng.simulate((8, 8), 4); g.TiledLayout.make((8, 8), (4, 4))\n"
                    "g.GNAParams.make((8, 8), 4); g.load_recipe('flux-dev-4k')") == []
    # the operator needs torch, not diffusers
    assert imported("import torch, gna_diffusers as g\nq = torch.randn(1, 64, 2, 16)\n"
                    "g.gna_attention(q, q, q, grid=(8, 8), window=4)") == ["torch"]
    for args in (["simulate", "--shipped"], ["recipe", "check", "flux-dev-4k"], ["recipe", "list"]):
        assert imported(f"from gna_diffusers.cli import main\nassert main({args!r}) == 0") == []
    assert imported("from gna_diffusers.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass") == []


PIPELINE_CHECK = """
from gna_diffusers.tiny import TINY_PIPELINES
pipe = TINY_PIPELINES["flux"][0](0)
assert isinstance(pipe, DiffusionPipeline)
state = pipe.enable_gna({"model": "flux", "grid": [16, 16], "dense_steps": 0, "layers": [{"blocks": "all", "window": 2}]})
assert gna_diffusers.gna_state(pipe) is state
pipe.disable_gna()
assert gna_diffusers.gna_state(pipe) is None
print("ok")
"""


@pytest.mark.parametrize("prelude", [
    "from diffusers import DiffusionPipeline\nimport gna_diffusers",                   # class defined: patched at once
    "import diffusers\nimport gna_diffusers\nfrom diffusers import DiffusionPipeline",  # diffusers first, class later
    "import gna_diffusers\nfrom diffusers import DiffusionPipeline",                   # gna_diffusers first
])
def test_enable_gna_in_either_import_order(prelude) -> None:
    result = fresh(code=prelude + "\n" + PIPELINE_CHECK)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_env_reports_without_building(tmp_path) -> None:
    result = fresh("env", env={"GNA_KERNEL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in ("gna-diffusers", "torch", "diffusers", "transformers", "nvidia-cutlass", "GPUs", "nvcc",
                   str(tmp_path / "cache"), "bfloat16 head_dim  64", "float16  head_dim 128"):
        assert needle in out
    if not torch.cuda.is_available():
        assert "none (" in out and "head_dim 128: reference" in out and "not cutlass: " in out
    assert not (tmp_path / "cache").exists()                                  # nothing built
    assert result.stderr == ""                                                # no third-party warnings
    assert len(out.splitlines()) < 45                                         # one screen


def test_env_names_the_compiler_the_jit_uses(monkeypatch) -> None:
    """Without a system toolkit the JIT takes nvcc from the PyPI wheels (`[kernels]`); `env` must name that one, as
    the build does, not torch's CUDA_HOME."""
    from gna_diffusers.backends import toolchain
    from gna_diffusers.cli import env

    if toolchain.pypi_problem() is not None:
        pytest.skip(f"PyPI compiler not installed: {toolchain.pypi_problem()}")
    monkeypatch.setattr(toolchain, "system_toolchain", lambda: None)
    line = env.nvcc_line()
    assert line.startswith(str(toolchain.pypi_home() / "bin" / "nvcc")) and "from pypi" in line, line
    assert re.search(r"CUDA 13\.\d", line), line                                # it ran and told its release


def test_env_lists_builds_of_both_architectures(tmp_path) -> None:
    from gna_diffusers.cli.env import built_kernels

    for name in ("gna_cutlass_sm90_bfloat16_d128_single_abc123", "gna_cutlass_sm100a_float16_d64_single_abc123",
                 "gna_cutlass_sm90_bfloat16_d64_persistent_0dd", "gna_cutlass_sm100a_bfloat16_d128_single_0dd"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ext.so").touch()
    (tmp_path / "gna_cutlass_sm90_float16_d128_single_abc123").mkdir()            # a failed build: no .so
    current, stale = built_kernels(tmp_path, "abc123")
    assert sorted(current) == ["bfloat16 d128 single (sm90a)", "float16 d64 single (sm100a)"]
    assert stale == 2


def test_build_kernels_builds_every_schedule_an_architecture_has(monkeypatch) -> None:
    """`build-kernels --arch sm100a` builds both sm100a schedules (the backend picks one per problem), as for sm90a."""
    from types import SimpleNamespace

    from gna_diffusers.backends import cutlass, toolchain
    from gna_diffusers.cli import build_parser

    built = []
    monkeypatch.setattr(cutlass, "toolchain_problem", lambda arch: None)
    monkeypatch.setattr(toolchain, "find_toolchain", lambda: SimpleNamespace(nvcc="nvcc", source="test"))
    monkeypatch.setattr(cutlass, "build_extension",
                        lambda dtype, head_dim, verbose, schedule, arch: built.append((arch, schedule)))
    args = build_parser().parse_args(["build-kernels", "--arch", "sm90a", "sm100a", "--dtypes", "bfloat16",
                                      "--head-dims", "128"])
    assert args.func(args) == 0
    assert sorted(built) == [("sm100a", "persistent"), ("sm100a", "single"), ("sm90a", "persistent"),
                             ("sm90a", "single")]
