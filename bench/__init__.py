"""sadcodec's benchmarks. Run each as a module from the repository root, e.g.
``python -m bench.rd`` or ``python -m bench.kodak --bpp 1.0`` (see bench/README.md); they
import the installed ``sadcodec`` and need no ``sys.path`` changes. Shared code lives in
``bench.benchlib``; the tests of this package are in bench/tests/."""
