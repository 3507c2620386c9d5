"""The lessons ship inside the wheel: `notebooks/NN_name.ipynb` (their source, kept at the top of the repository) and
each one's sidecar of profile values, `notebooks/NN_name.profiles.json`, are copied into `cropkit/lessons/notebooks/`
when the package is built, so `cropkit lessons DIR` and the main job work after `pip install`.
Everything else about the package is in pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithLessons(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's notebooks/ directly
        target = Path(self.build_lib) / "cropkit" / "lessons" / "notebooks"
        target.mkdir(parents=True, exist_ok=True)
        lessons = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
        if not lessons:
            raise FileNotFoundError(f"no lessons in {ROOT / 'notebooks'} to package")
        sidecars = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.profiles.json"))
        for path in lessons + sidecars:
            shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildWithLessons})
