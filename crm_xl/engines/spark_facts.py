"""The facts on Spark: the staged lines handed over as Arrow, the queries of
:mod:`crm_xl.engines.sql` in Spark SQL, the results collected as Arrow.

It runs on the active Spark session if there is one (a cluster, Databricks), else on a local one
made once per process (:func:`local_session`). Day and month numbers are taken in UTC whatever the
session's time zone: the staged dates carry no zone, and a zone would move lines across midnight.
"""

from __future__ import annotations

import uuid

import pandas as pd
from pyspark.sql import SparkSession

from crm_xl.core.facts import Facts
from crm_xl.engines.sql import SPARK, core_query, line_table, links_query, months_query, read_facts
from crm_xl.errors import CrmXlError

LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "4",      # the default 200 is for clusters: tiny tasks here
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "2g",
}


def local_session(master: str = "local[2]") -> SparkSession:
    """The active Spark session, or a small local one (made once; Spark keeps it for the process)."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.master(master).appName("crm_xl")
    for key, value in LOCAL_CONF.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:   # pyspark's errors for a missing or too old Java have no common base
        raise CrmXlError(f"engine 'spark' could not start a local Spark session ({' '.join(str(exc).split())}); "
                         "it needs Java 17 or later on PATH or in JAVA_HOME") from exc
    session.sparkContext.setLogLevel("ERROR")
    return session


def customer_month_facts(lines: pd.DataFrame, measure: str = "units") -> Facts:
    """:func:`crm_xl.core.facts.customer_month_facts`, computed by Spark."""
    spark = local_session()
    table = line_table(lines)
    suffix = uuid.uuid4().hex[:12]    # names of this call's views: calls may share a session
    source, core = f"crm_xl_lines_{suffix}", f"crm_xl_core_{suffix}"
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        spark.createDataFrame(table.table).createOrReplaceTempView(source)
        purchases = spark.sql(core_query(table, measure, SPARK, source)).cache()
        purchases.createOrReplaceTempView(core)
        months = spark.sql(months_query(table, SPARK, source, core)).toArrow()
        links = spark.sql(links_query(core)).toArrow()
        purchases.unpersist()
    finally:
        spark.catalog.dropTempView(source)
        spark.catalog.dropTempView(core)
        spark.conf.set("spark.sql.session.timeZone", zone)
    return read_facts(table, months, links)
