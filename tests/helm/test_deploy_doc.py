"""docs/deploy.md runs as written: its helm commands render, its jobs and Services exist."""

from __future__ import annotations

import re
import shlex

import pytest


def _shell_blocks(chart) -> list[str]:
    text = (chart.repo / "docs" / "deploy.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def _commands(block: str) -> list[str]:
    """Lines of a block with `\\` continuations joined and heredoc bodies left out."""
    block = re.sub(r"<<'EOF'\n.*?\nEOF\n", "<<'EOF'\n", block, flags=re.S)
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def doc(chart, tmp_path_factory):
    """The guide's commands, with the files its heredocs write created in a scratch folder."""
    workdir = tmp_path_factory.mktemp("deploy-doc")
    blocks = _shell_blocks(chart)
    for name, body in (m for b in blocks for m in re.findall(r"cat > (\S+) <<'EOF'\n(.*?)\nEOF\n", b, re.S)):
        (workdir / name).write_text(body + "\n")
    return workdir, [c for b in blocks for c in _commands(b)]


def test_every_helm_install_and_upgrade_of_the_chart_renders(chart, doc):
    workdir, commands = doc
    rendered = 0
    for command in commands:
        argv = shlex.split(command)
        if argv[:2] not in (["helm", "install"], ["helm", "upgrade"]) or "./helm" not in argv:
            continue
        args = [chart.path.as_posix() if a == "./helm" else a for a in argv[2:]]
        proc = chart.run("template", *args, "--kube-version", "1.30.0", cwd=workdir)
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"
        assert "kind: RayService" in proc.stdout
        rendered += 1
    assert rendered >= 5, "docs/deploy.md lost its helm commands"


def test_the_training_runs_in_the_guide_render_their_rayjobs(chart, doc):
    workdir, commands = doc
    jobs = []
    for command in commands:
        if command.startswith("helm upgrade") and "train.enabled=true" in command:
            args = [chart.path.as_posix() if a == "./helm" else a for a in shlex.split(command)[2:]]
            proc = chart.run("template", *args, "--show-only", "templates/rayjob-train.yaml", cwd=workdir)
            assert proc.returncode == 0, proc.stderr
            jobs.append(re.search(r"^  name: (\S+)$", proc.stdout, re.M).group(1))
    assert jobs == ["seasonrec-train-initial", "seasonrec-train-2024w48"]
    watched = [c.split()[-2] for c in commands if c.startswith("kubectl -n seasonrec get rayjob")]
    followed = [c.split("job-name=")[1].split()[0] for c in commands if "job-name=" in c]
    assert set(watched + followed) <= set(jobs)


def _script_flags(path) -> set[str]:
    return set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', path.read_text()))


def test_every_ray_job_submit_names_a_script_and_flags_it_takes(chart, doc):
    _, commands = doc
    submits = [c for c in commands if c.startswith("ray job submit")]
    assert len(submits) >= 5
    for command in submits:
        argv = shlex.split(command)
        assert argv[argv.index("--") + 1] == "python"
        script = argv[argv.index("--") + 2]
        assert script.startswith("ray_jobs/")
        assert (chart.repo / script).is_file(), f"{command}: no {script}"
        flags = {a for a in argv[argv.index("--") + 3 :] if a.startswith("--")}
        assert flags <= _script_flags(chart.repo / script), f"{command}: flags {script} does not take"


def test_every_entrypoint_in_the_table_exists(chart):
    text = (chart.repo / "docs" / "deploy.md").read_text()
    listed = set(re.findall(r"^\| `(ray_jobs/\w+\.py)` \|", text, re.M))
    on_disk = {p.relative_to(chart.repo).as_posix() for p in (chart.repo / "ray_jobs").glob("*.py")}
    assert on_disk <= listed, f"ray_jobs scripts missing from the guide's table: {sorted(on_disk - listed)}"
    assert listed <= on_disk


def test_port_forwards_name_services_the_release_has(chart, doc):
    workdir, commands = doc
    docs = chart.template("-f", str(workdir / "gpu-values.yaml"), release="seasonrec")
    services = {d["metadata"]["name"] for d in chart.by_kind(docs, "Service")}
    # KubeRay names a cluster's Services after the RayService or RayCluster.
    services |= {f"{d['metadata']['name']}-head-svc" for d in docs if d["kind"] in ("RayService", "RayCluster")}
    services |= {f"{d['metadata']['name']}-serve-svc" for d in chart.by_kind(docs, "RayService")}
    forwards = [re.search(r"port-forward svc/(\S+)", c).group(1) for c in commands if "port-forward svc/" in c]
    assert forwards and set(forwards) <= services, f"{forwards} vs {sorted(services)}"
    triton = chart.one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = {c.split(" -l ")[1].split()[0] for c in commands if "get pods -l" in c and "triton" in c}
    for selector in selectors:
        for pair in selector.split(","):
            key, value = pair.split("=")
            assert triton[key] == value, f"the guide selects Triton pods with {selector}"
    model = chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--load-model=ranker" in model
    assert all("/v2/repository/models/ranker/load" in c for c in commands if "/v2/repository/models/" in c)
