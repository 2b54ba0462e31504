# The test modules that hold CUDA tests (tests/_devices.py's marks), which the device scripts run
# with `-m cuda`: named one by one because the GPU image cannot import every test module (it has
# no ArviZ, papermill or Ray). tests/test_environment.py checks that the list is complete.
# shellcheck disable=SC2034
CUDA_TEST_FILES="tests/test_attacks.py tests/test_fused.py tests/test_graphed.py tests/test_ksgld.py tests/test_laplace.py
  tests/test_langevin.py tests/test_metrics.py tests/test_philox.py tests/test_transfer.py"
