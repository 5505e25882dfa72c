"""The jwtriage Streamlit dashboard: `jwtriage dashboard` or `streamlit run dashboards/app.py -- --db PATH`.

| module | role |
|---|---|
| app | the entry point: reads the store path once, sets up the page and the navigation |
| data | every read of the store, one function per page, with and without a TTL cache |
| charts | the Altair (Vega-Lite) charts |
| ui | what pages share: the store guard, the reference time, labels and formats |
| links | the view in the URL: each page's filters read from and written to the query string |
| views/ | one small module per page: overview, rotations, triage, live, dead_letters |

Pages never open the store themselves: `data` opens a short-lived read-only connection
(`pipeline.io.store_readers.connect_readonly`) per question and closes it before returning, so the
dashboard never holds the file while a consumer writes. Aggregation happens in DuckDB
(`pipeline.queries`); a page gets small data frames back.
"""
