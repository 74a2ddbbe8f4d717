/**
 * The stdio adapter's descriptor: logentry and metric instances written as log lines to standard
 * output, standard error or a (rotated) file. Implementation: mod/mixer/adapters/stdio.ts.
 *
 * @module
 */
import { fieldPath, type Infer, t } from "../../schema.ts";
import { defineAdapter } from "../adapter.ts";

const levels = ["INFO", "WARNING", "ERROR"] as const;

const params = t.object(
  {
    logStream: t.enum(["STDOUT", "STDERR", "FILE", "ROTATED_FILE"]),
    severityLevels: t.map(t.enum(levels)),
    metricLevel: t.enum(levels),
    outputLevel: t.enum(levels),
    outputAsJson: t.bool(),
    outputPath: t.string(),
    maxMegabytesBeforeRotation: t.int({ min: 0 }),
    maxDaysBeforeRotation: t.int({ min: 0 }),
    maxRotatedFiles: t.int({ min: 0 }),
  },
  {
    check: (p, path, report) => {
      if ((p.logStream === "FILE" || p.logStream === "ROTATED_FILE") && !p.outputPath) {
        report.error(fieldPath(path, "outputPath"), `logStream ${p.logStream} needs outputPath`);
      }
    },
  },
);

/** stdio adapter parameters. */
export type StdioParams = Infer<typeof params>;

/** The stdio adapter. */
export const stdio = defineAdapter({ name: "stdio", templates: ["logentry", "metric"], params });
