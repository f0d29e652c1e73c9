"""Getting interpreters into images: the image plan (pure), the builder that makes what it
names (a Debian base by the lab's own bootstrap, a python-build-standalone archive, or a
registry image, plus the runner's layer), and the image phase every command runs."""

from lab.images.build import Built, ImagePhase
from lab.images.doctor import run_checks
from lab.images.listing import availability, print_list
from lab.images.plan import ImagePlan, TargetImage, emulation_problem, plan_image

__all__ = ["Built", "ImagePhase", "ImagePlan", "TargetImage", "availability", "emulation_problem",
           "plan_image", "print_list", "run_checks"]
