/**
 * Who the coordinator's credentials are: STS GetCallerIdentity, the only call of
 * `@aws-sdk/client-sts`. The account it answers is the account whose EC2 instances the coordinator
 * manages (DescribeInstances only ever lists the caller's own), so it is the account an
 * EventBridge event about one of them must come from. Against localcloud (an endpoint given), the
 * same endpoint serves STS.
 */
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";

export interface CallerIdentity {
  account: string;
  arn: string;
}

export async function callerIdentity(o: { region: string; endpoint?: string }): Promise<CallerIdentity> {
  const local = o.endpoint !== undefined;
  const client = new STSClient({
    region: o.region,
    ...(local ? { endpoint: o.endpoint } : {}),
    ...(local && !process.env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: "spotkeep", secretAccessKey: "spotkeep" } } : {}),
    maxAttempts: 3,
  });
  try {
    const r = await client.send(new GetCallerIdentityCommand({}));
    if (!r.Account || !/^\d{12}$/.test(r.Account)) throw new Error(`STS GetCallerIdentity answered no account id (${String(r.Account)})`);
    return { account: r.Account, arn: r.Arn ?? "" };
  } finally {
    client.destroy();
  }
}
