/**
 * The bucket contract (test/integration/bucket-contract.ts) against S3: moto's, through the real
 * SDK (src/remote-store/s3-bucket.ts). Leftovers: multipart uploads neither completed nor aborted.
 */
import { openS3Bucket } from '../../src/remote-store/s3-bucket.js';
import { startMoto } from '../helpers/moto.js';
import { createBucket, emptyBucket, multipartUploads, testS3Client, useMotoS3 } from '../helpers/s3.js';
import { registerBucketContract } from './bucket-contract.js';

registerBucketContract('s3', async () => {
  const moto = await startMoto();
  useMotoS3(moto.endpoint);
  const client = testS3Client(moto.endpoint);
  await createBucket(client, 'team-bucket');
  const bucket = await openS3Bucket({ bucket: 'team-bucket', prefix: 'dstack' });
  return {
    bucket,
    reset: () => emptyBucket(client, 'team-bucket'),
    leftovers: async () => (await multipartUploads(client, 'team-bucket')).map((u) => `multipart upload of ${u.key}`),
    cleanup: async () => {
      await bucket.close();
      client.destroy();
      await moto.stop();
    },
  };
});
