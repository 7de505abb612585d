/**
 * The crash matrix: the steps each runbook records, in order, for the specs the crash suites use,
 * written with the step names the runbooks themselves use (shared/steps.ts). The crash suites kill
 * the coordinator right after each of these steps is recorded, all in one run of the runbook
 * (test/support/crash-chain.ts): a step recorded under another name, or at a number the matrix
 * does not list, fails the suite, so a runbook that gains, loses or reorders a step fails its crash
 * suite instead of quietly crashing elsewhere. The crashing coordinator also refuses to crash
 * (exit 3, naming both) when the step at the number it was armed for has another name.
 *
 * SPOTKEEP_CRASH_STEPS=4,14 runs only those step numbers of every matrix.
 */
import { memberName } from "../../shared/group-spec.js";
import { STEP, STEP_OF } from "../../shared/steps.js";

const ONLY = process.env.SPOTKEEP_CRASH_STEPS?.split(",").map(Number);

/** The data volume every crash suite's spec has. */
const SDF = "/dev/sdf";

/** The bring-up of a generation after the launch, with the one data volume, and its retire. */
const BRING_UP = [STEP.waitRunning, STEP_OF.attach(SDF), STEP.restore, STEP.finish];
const RETIRE = [STEP.deleteOldRoot, STEP.retention];
/** Quiesce and capture of a running generation before its replacement (root persistence, reattached data volume). */
const CAPTURE = [STEP.begin, STEP.quiesce, STEP.snapshotRoot, STEP.terminateOld, STEP.waitOldTerminated, STEP.image, STEP.waitSnapshots];

export const CRASH_MATRIX = {
  /** create: root persistence, one data volume, same ENI. */
  create: [STEP.resolve, STEP_OF.createVolume(SDF), STEP.createEni, STEP.launch, ...BRING_UP],
  replace: [...CAPTURE, STEP.subnets, STEP.launch, ...BRING_UP, ...RETIRE],
  recycle: [...CAPTURE, STEP.subnets, STEP.launch, ...BRING_UP, ...RETIRE],
  pause: [
    STEP.begin,
    STEP.quiesce,
    STEP.snapshotRoot,
    STEP.terminateOld,
    STEP.waitOldTerminated,
    STEP.image,
    STEP.deleteOldRoot,
    STEP.finish,
  ],
  resume: [STEP.begin, STEP.subnets, STEP.launch, ...BRING_UP, ...RETIRE],
  /** snapshot: consistency freeze (the default), data volumes only. */
  snapshot: [STEP.begin, STEP.freeze, STEP_OF.snapshot(SDF), STEP.thaw, STEP.waitSnapshots, STEP.retention],
  /** create with `attach: secondary` (the stable ENI at device index 1). */
  "create-secondary": [
    STEP.resolve,
    STEP_OF.createVolume(SDF),
    STEP.createEni,
    STEP.launch,
    STEP.waitRunning,
    STEP.attachEni,
    STEP_OF.attach(SDF),
    STEP.restore,
    STEP.finish,
  ],
  /** A make-before-break replace: the replacement is ready before the old instance is quiesced. */
  "replace-mbb": [
    STEP.begin,
    STEP.mbbSubnets,
    STEP.mbbLaunch,
    STEP.mbbWaitReady,
    STEP.cutoverQuiesce,
    STEP.detachEni,
    STEP_OF.detach(SDF),
    STEP.attachEni,
    STEP_OF.attach(SDF),
    STEP.restore,
    STEP.finish,
    STEP.terminateOld,
    ...RETIRE,
  ],
  /** import of an on-demand instance with one data volume, keeping its root as an image. */
  import: [
    STEP.load,
    STEP.adopt,
    STEP.keepVolumes,
    STEP.keepEni,
    STEP.stop,
    STEP.snapshotRoot,
    STEP.image,
    STEP.terminateOriginal,
    STEP.waitOriginalTerminated,
    STEP.subnets,
    STEP.launch,
    ...BRING_UP,
    ...RETIRE,
  ],
  /** delete of a running instance keeping nothing: its agent quiesces (preStop hook, sync, unmount) first. */
  delete: [
    STEP.begin,
    STEP.quiesce,
    STEP.terminate,
    STEP.waitTerminated,
    STEP_OF.deleteVolume(SDF),
    STEP.deleteEni,
    STEP.deregisterImages,
    STEP.deleteSnapshots,
    STEP.keep,
    STEP.finish,
  ],
  /** delete of a running instance keeping the volumes and the network interface. */
  "delete-keep": [
    STEP.begin,
    STEP.quiesce,
    STEP.terminate,
    STEP.waitTerminated,
    STEP.deregisterImages,
    STEP.deleteSnapshots,
    STEP.keep,
    STEP.finish,
  ],
  /** grow: /dev/sdf grows (ModifyVolume, filesystem grown online) and a new /dev/sdg is created, attached and mounted live. */
  grow: [
    STEP.begin,
    STEP_OF.modify(SDF),
    STEP_OF.waitModified(SDF),
    STEP_OF.growFilesystem(SDF),
    STEP_OF.createVolume("/dev/sdg"),
    STEP_OF.attach("/dev/sdg"),
    STEP_OF.mount("/dev/sdg"),
    STEP.record,
  ],
  /**
   * relocate (restore --region) of a paused instance with root persistence, one data volume and
   * same-eni: the data volume comes with the launch (from its copy), so nothing is attached.
   */
  relocate: [STEP.begin, STEP.subnets, STEP.createEni, STEP.launch, STEP.waitRunning, STEP.restore, STEP.finish, ...RETIRE],
} as const satisfies Record<string, readonly string[]>;

export type MatrixKind = keyof typeof CRASH_MATRIX;

/** A group's runbooks, for a group of two members named `group`: its steps are named after the members. */
export function groupSteps(kind: "group-update" | "group-scale", group: string): string[] {
  const [m0, m1] = [memberName(group, 0), memberName(group, 1)];
  return kind === "group-update"
    ? [STEP.plan, STEP_OF.rollMember(m0), STEP_OF.waitMember(m0), STEP_OF.rollMember(m1), STEP_OF.waitMember(m1)]
    : [
        STEP.plan,
        STEP_OF.allocateMember(m0),
        STEP_OF.createMember(m0),
        STEP_OF.allocateMember(m1),
        STEP_OF.createMember(m1),
        STEP_OF.waitMemberReady(m0),
        STEP_OF.waitMemberReady(m1),
      ];
}

/** Step numbers of a group runbook's matrix (SPOTKEEP_CRASH_STEPS keeps only those it lists). */
export function groupStepNumbers(kind: "group-update" | "group-scale"): number[] {
  return groupSteps(kind, "g")
    .map((_, i) => i + 1)
    .filter((n) => !ONLY || ONLY.includes(n));
}

export interface CrashCase {
  /** The workflow kind the coordinator runs (a matrix's variant, such as replace-mbb, runs as replace). */
  kind: string;
  /** 1-based: the coordinator is killed right after this step is recorded. */
  n: number;
  /** The step's name at n, which the crashing coordinator checks. */
  step: string;
}

/** The workflow kind each matrix runs as. */
const RUNS_AS: Partial<Record<MatrixKind, string>> = {
  "create-secondary": "create",
  "replace-mbb": "replace",
  "delete-keep": "delete",
};

/** Every case of the matrix of `m` (SPOTKEEP_CRASH_STEPS keeps only the step numbers it lists). */
export function crashCases(m: MatrixKind): CrashCase[] {
  return CRASH_MATRIX[m].map((step, i) => ({ kind: RUNS_AS[m] ?? m, n: i + 1, step })).filter((c) => !ONLY || ONLY.includes(c.n));
}

/** The number of steps a matrix's runbook records. */
export const stepCount = (m: MatrixKind): number => CRASH_MATRIX[m].length;
