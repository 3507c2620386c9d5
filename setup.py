"""The lessons ship inside the wheel: `notebooks/*.ipynb` (their source, kept at the top of the repository) are
copied into `cropkit/lessons/notebooks/` when the package is built, so `cropkit lessons DIR` works after `pip install`.
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
        for lesson in lessons:
            shutil.copyfile(lesson, target / lesson.name)


setup(cmdclass={"build_py": BuildWithLessons})
