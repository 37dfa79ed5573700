"""Helper of scripts/bench-forecast-public: builds the series, runs jobs' models through the
`forecast_public` harness and the peers here, and prints them side by side.

  bench_forecast_public.py DATA_DIR "HARNESS COMMAND"
"""
import json
import shlex
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

warnings.filterwarnings("ignore")
EPOCH = pd.Timestamp("1970-01-01")
# The feature sets of jobs' daily and weekly layouts (models/src/features.rs), for the peer.
DAY = dict(lags=[1, 7, 14, 28], means=[7, 28], weekday=True, season=7, freq="D")
WEEK = dict(lags=[1, 2, 4, 52], means=[4, 13], weekday=False, season=52, freq="W-FRI")


def cdnow(data):
    df = pd.read_csv(f"{data}/CDNOW_master.txt", sep=r"\s+", header=0,
                     names=["customer", "date", "cds", "dollars"], dtype={"date": str})
    df["date"] = pd.to_datetime(df.date, format="%Y%m%d")
    d = df.groupby("date").agg(q=("cds", "sum"), v=("dollars", "sum"))
    idx = pd.date_range(d.index.min(), d.index.max())
    d = d.reindex(idx, fill_value=0)
    q = d.q.to_numpy(float)
    price = pd.Series(np.where(q > 0, d.v / np.maximum(q, 1), np.nan)).ffill().bfill().to_numpy()
    return [dict(id="cdnow", start=idx[0], q=q, price=price, holiday=np.zeros(len(q)))]


def walmart(data):
    d = pd.read_csv(f"{data}/walmart_sales_weekly.csv", parse_dates=["Date"])
    out = []
    for sid, g in d.groupby("id", sort=True):
        g = g.sort_values("Date")
        out.append(dict(id=sid, start=g.Date.iloc[0], q=g.Weekly_Sales.to_numpy(float),
                        price=np.ones(len(g)), holiday=g.IsHoliday.to_numpy(float)))
    return out


def lag_regression(q, hol, start, h, L):
    """scikit-learn LinearRegression on lags, means, weekday, holiday and trend; recursive."""
    def row(qq, t):
        r = [qq[t - l] for l in L["lags"]] + [np.mean(qq[t - m:t]) for m in L["means"]]
        if L["weekday"]:
            dow = (start.dayofweek + t) % 7
            r += [float(dow == k) for k in range(6)]
        return r + [hol[t], t]
    w = max(L["lags"])
    X = np.array([row(q, t) for t in range(w, len(q))])
    m = LinearRegression().fit(X, q[w:])
    qq = list(q)
    for t in range(len(q), len(q) + h):
        qq.append(max(m.predict(np.array([row(qq, t)]))[0], 0.0))
    return np.array(qq[len(q):])


def auto_ets(q, start, h, L):
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS
    idx = pd.date_range(start, periods=len(q), freq=L["freq"])
    sf = StatsForecast(models=[AutoETS(season_length=L["season"])], freq=L["freq"])
    return np.maximum(sf.forecast(df=pd.DataFrame({"unique_id": "s", "ds": idx, "y": q}), h=h)["AutoETS"].to_numpy(), 0)


def mase(a, f, train, p):
    return np.mean(np.abs(a - f)) / np.mean(np.abs(train[p:] - train[:-p]))


def main():
    data, harness = sys.argv[1], shlex.split(sys.argv[2])
    rows = []
    for name, series, L, h in [("CDNOW daily", cdnow(data), DAY, 28), ("Walmart weekly", walmart(data), WEEK, 13)]:
        gran = "day" if L is DAY else "week"
        payload = {"granularity": gran, "horizon": h, "series": []}
        for s in series:
            first = int((s["start"] - EPOCH).days)
            step = 1 if L is DAY else 7
            payload["series"].append({
                "id": s["id"], "first_day": first,
                "quantity": s["q"][:-h].tolist(), "price": s["price"][:-h].tolist(),
                # A holiday period's first day; the calendar knows the held-out ones too.
                "holidays": [first + step * t for t in np.nonzero(s["holiday"])[0].tolist()]})
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(payload, f)
            f.flush()
            t = time.perf_counter()
            ours = json.loads(subprocess.run(harness + [f.name], check=True, capture_output=True, text=True).stdout)
            ours_s = time.perf_counter() - t
        scores = {k: [] for k in ["jobs (backtest choice)", "jobs ols", "jobs ridge", "sklearn LinearRegression (lags)", "statsforecast AutoETS", "seasonal naive"]}
        errs = {k: 0.0 for k in scores}
        units, inside, n, chosen, peer_s = 0.0, 0, 0, [], 0.0
        for s in series:
            train, actual = s["q"][:-h], s["q"][-h:]
            o = ours["forecasts"][s["id"]]
            t = time.perf_counter()
            lr = lag_regression(train, s["holiday"], s["start"], h, L)
            ets = auto_ets(train, s["start"], h, L)
            peer_s += time.perf_counter() - t
            sn = np.array([train[len(train) - L["season"] + (i % L["season"])] for i in range(h)])
            fc = {"jobs (backtest choice)": np.array(o["auto"]), "jobs ols": np.array(o["ols"]),
                  "jobs ridge": np.array(o["ridge"]), "sklearn LinearRegression (lags)": lr,
                  "statsforecast AutoETS": ets, "seasonal naive": sn}
            for k, v in fc.items():
                scores[k].append(mase(actual, v, train, L["season"]))
                errs[k] += float(np.abs(actual - v).sum())
            units += float(actual.sum())
            lo, hi = np.array(o["lower"]), np.array(o["upper"])
            inside += int(((actual >= lo) & (actual <= hi)).sum())
            n += h
            chosen.append(o["auto_method"])
        print(f"\n{name}: {len(series)} series, last {h} {'days' if L is DAY else 'weeks'} held out; "
              f"MASE scaled by the in-sample seasonal-naive error (period {L['season']})")
        print(f"{'contender':<34} {'mean MASE':>10} {'WAPE':>8}")
        for k in scores:
            print(f"{k:<34} {np.mean(scores[k]):>10.4f} {errs[k] / units:>8.4f}")
        best_peer = min(np.mean(scores[k]) for k in ["sklearn LinearRegression (lags)", "statsforecast AutoETS"])
        ratio = np.mean(scores["jobs (backtest choice)"]) / best_peer
        print(f"jobs' choices: {', '.join(chosen)}; 80% interval covers {inside}/{n} held-out periods "
              f"({inside / n:.0%}); jobs / best peer MASE {ratio:.3f} (goal < 1); "
              f"jobs {ours['seconds']:.2f} s in the harness, peers {peer_s:.2f} s")
        rows.append({"data": name, "mase": {k: float(np.mean(v)) for k, v in scores.items()},
                     "coverage": inside / n, "chosen": chosen})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
