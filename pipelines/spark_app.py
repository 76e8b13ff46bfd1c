"""Entry point for ``spark-submit`` (Airflow's SparkSubmitOperator): runs a ``seqrep`` command."""

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
