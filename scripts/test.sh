#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs pytest. Extra arguments go to pytest.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/setup.sh" || exit 1
cd "$here/.."
python -m pytest "$@"
rc=$?
if [ "$rc" = 5 ]; then
  # pytest's "no tests were collected" is neither a pass nor an ordinary failure: say so, fail.
  echo "test.sh: pytest collected no tests (exit 5) - the suite did not run" >&2
fi
exit "$rc"
