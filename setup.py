from setuptools import find_packages, setup

# twisted/plugins has no __init__.py (it must not shadow Twisted's own), so it
# is listed by hand: a plain `pip install .` then puts our plugin files next to
# Twisted's and `twistd dialgw` finds them.
setup(
    name="dialgw",
    version="0.1.0",
    description="Outbound-call gateway for FreeSWITCH pools",
    python_requires=">=3.11",
    packages=[*find_packages(include=["dialgw", "dialgw.*"]), "twisted.plugins"],
    package_data={"twisted.plugins": ["dialgw_plugin.py", "dialgw_simulator_plugin.py"]},
    install_requires=[
        "Twisted[tls]>=24.7",
        "klein>=24.8",
        "treq>=24.9",
        "attrs>=23.1",
        "prometheus-client>=0.20",
        # [database] backend = postgresql (several gateway nodes).
        "psycopg2-binary>=2.9",
        "txredisapi>=1.6",
    ],
    extras_require={
        "test": [
            "hypothesis>=6.100",
            "standardwebhooks>=1.0",
            # tests/test_openapi.py: the contract run and docs/openapi.yaml.
            "schemathesis>=4.32,<5",
            "PyYAML>=6.0",
            # make lint (run by make test): ruff, and mypy --strict with the
            # zope.interface plugin. mypy-zope supports one mypy series at a
            # time, and a new ruff or mypy series brings new checks: upgrade
            # them on purpose, not on install.
            "ruff>=0.17,<0.18",
            "mypy>=2.4,<2.5",
            "mypy-zope>=1.0.17,<1.1",
            # Hints for the libraries that ship none (Twisted, klein, treq and
            # prometheus_client ship their own; txredisapi has none at all).
            "types-psycopg2>=2.9",
            "types-PyYAML>=6.0",
        ],
    },
    entry_points={"console_scripts": ["dialgw-admin = dialgw.admin:main"]},
)
