/**
 * config/grafana: the dashboards are well-formed Grafana JSON (unique panel ids, the Prometheus
 * data source as `${datasource}`, query variables from label_values), and every panel query runs
 * without error against a real Prometheus (Debian's) scraping a real `meshd serve` that served
 * traffic, with config/prometheus's rules loaded; the traffic panels return data.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectEnvoy, type EnvoyClient, LDS } from "../e2e/_envoy_client.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "../e2e/_meshd.ts";
import {
  allPanels,
  labelValuesQuery,
  loadDashboards,
  metricNames,
  panelQueries,
  type PanelQuery,
  PROMETHEUS_DIR,
  recordedNames,
  substitute,
  variableQuery,
} from "./_dashboards.ts";
import { type Prometheus, startPrometheus } from "./_prometheus.ts";
import { type Call, reportHttp, reportTcp, telemetryConfig, type Workload } from "./_traffic.ts";

const dashboards = loadDashboards();
const queries = panelQueries(dashboards);

/** Panels over Istio's traffic metrics (or the rules recorded from them) must show the traffic sent. */
const isTraffic = (q: PanelQuery) => /istio_/.test(q.expr);

describe("Grafana dashboards (static)", () => {
  test("there are the mesh, service, workload and control-plane dashboards", () => {
    expect(dashboards.map((d) => d.file)).toEqual([
      "control-plane.json",
      "mesh.json",
      "service.json",
      "workload.json",
    ]);
    expect(new Set(dashboards.map((d) => d.uid)).size).toBe(dashboards.length);
  });

  for (const d of dashboards) {
    test(`${d.file}: schema 39, unique panel ids, every query on the \${datasource} variable`, () => {
      expect(d.schemaVersion).toBe(39);
      const panels = allPanels(d);
      const ids = panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of panels) {
        if (p.type === "row") continue;
        expect({ panel: p.title, ds: p.datasource }).toEqual({
          panel: p.title,
          ds: { type: "prometheus", uid: "${datasource}" },
        });
        expect(p.targets?.length ?? 0).toBeGreaterThan(0);
        for (const t of p.targets!) expect(t.datasource?.uid).toBe("${datasource}");
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      }
      const vars = d.templating.list;
      expect(vars[0]).toMatchObject({ name: "datasource", type: "datasource", query: "prometheus" });
      for (const v of vars.slice(1)) {
        expect(v.type).toBe("query");
        expect(labelValuesQuery(variableQuery(v))).toBeDefined();
      }
    });
  }

  test("metricNames() finds the metrics of a query and nothing else", () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le, type) (rate(pilot_xds_push_time_bucket{instance=~".*"}[1m]))) > 1',
      ),
    ).toEqual(["pilot_xds_push_time_bucket"]);
    expect(metricNames("a:b:rate1m / c_total or vector(0) and on (x) d")).toEqual([
      "a:b:rate1m",
      "c_total",
      "d",
    ]);
  });
});

describe("Grafana dashboards against Prometheus scraping a meshd that served traffic", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-obs-"));
  let meshd: MeshdProcess;
  let prometheus: Prometheus;
  let envoy: EnvoyClient;
  let emitted: Set<string>;
  const values: Record<string, string> = {};
  /** The values the traffic below gives each variable, picked where label_values offers them. */
  const PREFERRED: Record<string, string> = {
    namespace: "bookinfo",
    service: "reviews.bookinfo.svc.cluster.local",
    workload: "reviews-v1",
  };

  const wl = (name: string, app: string, ip: string): Workload => ({
    name,
    namespace: "bookinfo",
    app,
    version: "v1",
    ip,
    serviceAccount: `bookinfo-${app}`,
  });
  const productpage = wl("productpage-v1", "productpage", "192.0.2.10");
  const reviews = wl("reviews-v1", "reviews", "192.0.2.12");
  const ratings = wl("ratings-v1", "ratings", "192.0.2.15");
  const REVIEWS = "reviews.bookinfo.svc.cluster.local";
  const RATINGS = "ratings.bookinfo.svc.cluster.local";

  const calls = (source: Workload, host: string, n: number, errors: number): Call[] =>
    Array.from({ length: n }, (_, i) => ({
      source,
      destinationHost: host,
      port: 9080,
      code: i < errors ? 503 : 200,
      ms: 5 + (i % 20),
      mtls: i % 4 !== 0,
    }));
  const sendTraffic = async () => {
    await reportHttp(meshd.grpcAddr, reviews, calls(productpage, REVIEWS, 40, 4));
    await reportHttp(meshd.grpcAddr, ratings, calls(reviews, RATINGS, 30, 0));
    await reportTcp(meshd.grpcAddr, ratings, calls(reviews, RATINGS, 5, 0));
    await reportTcp(meshd.grpcAddr, reviews, calls(productpage, REVIEWS, 2, 0));
  };

  beforeAll(async () => {
    cpSync(join(ROOT, "config/samples"), dir, { recursive: true });
    writeFileSync(join(dir, "telemetry.yaml"), telemetryConfig);
    // A config error, so the config panels have one to show.
    writeFileSync(
      join(dir, "broken.yaml"),
      "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: broken\n  namespace: bookinfo\nspec:\n  hosts: []\n",
    );
    meshd = await startMeshd({
      args: [`--config-dir=${dir}`, "--push-debounce=10ms", "--config-debounce=10ms"],
    });
    expect(
      await eventually(
        async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200,
        20_000,
      ),
    ).toBe(true);
    // A sidecar that NACKs one listener push, for the xDS panels.
    envoy = connectEnvoy(
      meshd.grpcAddr,
      "sidecar~192.0.2.10~productpage-v1.bookinfo~bookinfo.svc.cluster.local",
      {
        NAMESPACE: "bookinfo",
        LABELS: { app: "productpage", version: "v1" },
        SERVICE_ACCOUNT: "bookinfo-productpage",
      },
    );
    envoy.nackNext(LDS, "rejected for the dashboard test");
    await sendTraffic();
    prometheus = await startPrometheus(meshd.adminAddr, [
      join(PROMETHEUS_DIR, "rules.yaml"),
      join(PROMETHEUS_DIR, "alerts.yaml"),
    ]);
    // Two scrapes of the traffic so far, then more traffic so every rate sees it grow.
    expect(
      await eventually(
        async () =>
          Number(
            (await prometheus.query("count_over_time(istio_requests_total[1m])")).data?.result[0]?.value[1] ??
              0,
          ) >= 2,
        20_000,
        100,
      ),
    ).toBe(true);
    await sendTraffic();
    expect(
      await eventually(
        async () =>
          ((await prometheus.query("destination_service:istio_requests:rate1m > 0")).data?.result.length ??
            0) >= 2,
        20_000,
        200,
      ),
    ).toBe(true);
    emitted = new Set(
      ((await (await fetch(`${prometheus.url}/api/v1/label/__name__/values`)).json()) as { data: string[] })
        .data,
    );
    values.instance = meshd.adminAddr;
  }, 90_000);

  afterAll(async () => {
    envoy?.close();
    await prometheus?.stop();
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("every template variable's label_values query gives values", async () => {
    for (const d of dashboards) {
      for (const v of d.templating.list.slice(1)) {
        const lv = labelValuesQuery(variableQuery(v))!;
        const got = await prometheus.labelValues(
          substitute(lv.selector, { ...values, namespace: ".*" }),
          lv.label,
        );
        expect({ dashboard: d.file, variable: v.name, got: got.length > 0 }).toEqual({
          dashboard: d.file,
          variable: v.name,
          got: true,
        });
        const preferred = PREFERRED[v.name];
        if (v.name !== "instance") {
          values[v.name] = preferred && got.includes(preferred) ? preferred : got[0]!;
        }
      }
    }
    expect(values).toMatchObject({ namespace: "bookinfo", service: REVIEWS, workload: "reviews-v1" });
  });

  test("every metric a panel reads is one meshd emits or rules.yaml records", () => {
    const known = new Set([...emitted, ...recordedNames()]);
    // Metrics with labels have no series until their first event, and the agent's come from
    // `meshd agent`; each is named where it is registered.
    const eventOnly = [
      "meshd_agent_certificate_expiry_seconds", // mod/agent/agent.ts
      "meshd_agent_certificate_requests_total", // mod/agent/agent.ts
      "mixer_check_total", // mod/mixer/core.ts
      "mixer_quota_total", // mod/mixer/core.ts
      "mixer_requests_refused_total", // mod/mixer/core.ts
      "mixer_zipkin_spans_total", // mod/mixer/adapters/zipkin.ts
      "citadel_csr_refused_total", // mod/citadel/service.ts
      "galley_config_changes_refused_total", // mod/galley/store.ts
      "meshd_listener_limit_hits_total", // mod/shared/conn_guard.ts
    ];
    const missing = queries.flatMap((q) =>
      metricNames(substitute(q.expr, { namespace: "x", service: "x", workload: "x", instance: "x" }))
        .filter((m) => !known.has(m) && !eventOnly.includes(m))
        .map((m) => `${q.dashboard} "${q.panel}": ${m}`)
    );
    expect(missing).toEqual([]);
  });

  test("every panel query runs without error, and the traffic panels return data", async () => {
    expect(values.service).toBe(REVIEWS);
    const failures: string[] = [];
    const empty: string[] = [];
    for (const q of queries) {
      const expr = substitute(q.expr, values);
      const a = await prometheus.query(expr);
      if (a.status !== "success") {
        failures.push(`${q.dashboard} "${q.panel}" ${q.refId}: ${a.error}\n  ${expr}`);
      } else if (isTraffic(q) && (a.data?.result.length ?? 0) === 0) {
        empty.push(`${q.dashboard} "${q.panel}" ${q.refId}\n  ${expr}`);
      }
    }
    expect(failures).toEqual([]);
    expect(empty).toEqual([]);
  }, 30_000);

  test("the traffic the sidecars reported is what the panels count", async () => {
    const total = await prometheus.query(
      `sum(istio_requests_total{reporter="destination", destination_service="${REVIEWS}"})`,
    );
    expect(Number(total.data?.result[0]?.value[1])).toBe(80);
    const errors = await prometheus.query(
      `sum(istio_requests_total{reporter="destination", destination_service="${REVIEWS}", response_code=~"5.."})`,
    );
    expect(Number(errors.data?.result[0]?.value[1])).toBe(8);
    const tcp = await prometheus.query(`sum(istio_tcp_sent_bytes_total{destination_service="${RATINGS}"})`);
    expect(Number(tcp.data?.result[0]?.value[1])).toBe(10 * 65536);
    const recorded = await prometheus.query(
      `destination_service:istio_requests_error_ratio:rate1m{destination_service="${REVIEWS}"}`,
    );
    expect(Number(recorded.data?.result[0]?.value[1])).toBeCloseTo(0.1, 5);
    const rejects = await prometheus.query(`sum(pilot_total_xds_rejects{type="lds"})`);
    expect(Number(rejects.data?.result[0]?.value[1])).toBeGreaterThanOrEqual(1);
  });
});
