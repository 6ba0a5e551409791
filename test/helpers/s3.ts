/**
 * S3 on moto for the tests (moto.ts serves S3 on the same port as EC2): a client of the tests' own
 * to make, empty and inspect buckets behind dstack's back, and the environment dstack needs to
 * reach it (`AWS_ENDPOINT_URL` and throwaway credentials).
 */
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { motoEnv } from './moto.js';

export function testS3Client(endpoint: string): S3Client {
  // The SDK's notice that its 2027 releases need Node 22 is noise in the tests' output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
}

/** Sets the environment dstack's S3 client reads, for this process. */
export function useMotoS3(endpoint: string): void {
  Object.assign(process.env, motoEnv(endpoint));
}

export async function createBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
}

/** Deletes every object of the bucket and aborts its multipart uploads. */
export async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (r.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length === 0) break;
    await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
  }
  for (const u of await multipartUploads(client, bucket)) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.key, UploadId: u.id }));
  }
}

/** Multipart uploads started and neither completed nor aborted: parts someone pays for. */
export async function multipartUploads(client: S3Client, bucket: string): Promise<{ key: string; id: string }[]> {
  const r = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (r.Uploads ?? []).map((u) => ({ key: u.Key!, id: u.UploadId! }));
}
