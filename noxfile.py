"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s wheel`."""

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The full test suite (slow end-to-end tests included; `-- -m "not slow"` skips them)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the wheel and check that it installs and runs on its own."""
    session.install("build")
    session.run("python", "-m", "build", "--wheel", "--outdir", "dist")
    session.install(*sorted(str(p) for p in __import__("pathlib").Path("dist").glob("adm_diffusion-*.whl"))[-1:])
    session.run("adm", "--help")
    session.run("adm", "presets")
