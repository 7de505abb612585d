/**
 * A spec's instance types must run the image its generations boot: an arm64 (Graviton) type cannot
 * boot an x86_64 image, nor the reverse. EC2 refuses such a launch only when it happens (RunInstances
 * InvalidParameterValue), so create, update and import check first and refuse naming the field.
 */
import type { Ec2Gateway } from "./cloud/gateway.js";

export type ArchitectureGateway = Partial<Pick<Ec2Gateway, "describeImage" | "instanceTypeArchitectures">>;

/** What the generations boot: its architecture, and how a refusal names it ("image ami-…"). */
export interface BootImage {
  architecture: string;
  label: string;
}

/**
 * The spec's image as EC2 describes it; null when the gateway cannot check types (then nothing is
 * asked) or EC2 has no such image (the create runbook reports that).
 */
export async function specImage(ec2: ArchitectureGateway | undefined, imageId: string): Promise<BootImage | null> {
  if (!ec2?.describeImage || !ec2.instanceTypeArchitectures) return null;
  const image = await ec2.describeImage(imageId);
  return image ? { architecture: image.architecture, label: `image ${image.imageId}` } : null;
}

/**
 * One line per instance type that cannot boot `image`, naming the field:
 * `launch.instanceTypes[1]: m7g.large is arm64 but image ami-… is x86_64`. A type EC2 does not
 * describe is not judged here (the launch reports it).
 */
export async function architectureProblems(
  ec2: ArchitectureGateway | undefined,
  instanceTypes: readonly string[],
  image: BootImage | null,
  field = "launch.instanceTypes",
): Promise<string[]> {
  if (!image || !ec2?.instanceTypeArchitectures || instanceTypes.length === 0) return [];
  const archs = await ec2.instanceTypeArchitectures([...instanceTypes]);
  const out: string[] = [];
  instanceTypes.forEach((t, i) => {
    const supported = archs.get(t);
    if (supported && !supported.includes(image.architecture))
      out.push(`${field}[${i}]: ${t} is ${supported.join("/")} but ${image.label} is ${image.architecture}`);
  });
  return out;
}

/**
 * The refusal text for a spec whose types cannot boot its image, or null. When EC2 cannot be asked
 * (an outage, throttling) the check is skipped with a log line rather than failing the request:
 * RunInstances refuses a mismatch anyway, this only makes the refusal come early.
 */
export async function architectureRefusal(
  ec2: ArchitectureGateway | undefined,
  instanceTypes: readonly string[],
  image: () => Promise<BootImage | null>,
  field: string,
  log: (line: string) => void,
): Promise<string | null> {
  try {
    const problems = await architectureProblems(ec2, instanceTypes, await image(), field);
    return problems.length ? problems.join("; ") : null;
  } catch (err) {
    log(`could not check ${field} against the image's architecture (the launch will): ${(err as Error).message}`);
    return null;
  }
}
