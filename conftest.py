"""Test settings for the notebooks (nbval): fill in unattempted exercises with their reference solutions,
so every check_* call really runs, and keep plotting headless."""
import os

os.environ["DIFFGAN_FILL_SOLUTIONS"] = "1"
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
os.environ.setdefault("TQDM_MININTERVAL", "5")
os.environ.setdefault("OMP_NUM_THREADS", "1")   # tiny models: one thread is faster, above all on a busy CPU
