/**
 * Certificates for tests of the Kubernetes client over TLS, made with @peculiar/x509: a CA, a
 * serving certificate under it for 127.0.0.1, ::1 and localhost (as an API server's), and client
 * certificates under it (as a kubeconfig user's), all ECDSA P-256, PEM encoded.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

/** A certificate and its private key, PEM encoded. */
export interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** A CA able to issue leaves. */
export interface TestCa extends Pem {
  /** Issues a serving certificate for 127.0.0.1, ::1 and localhost. */
  server(): Promise<Pem>;
  /** Issues a client certificate with subject `CN=cn, O=group` (Kubernetes' user and group). */
  client(cn: string, group?: string): Promise<Pem>;
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

const keyPair = () => crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;

const serial = () =>
  "01" + [...crypto.getRandomValues(new Uint8Array(15))].map((b) => b.toString(16).padStart(2, "0")).join("");

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey("pkcs8", key)).toString("base64");
  return `-----BEGIN PRIVATE KEY-----\n${
    der.replace(/(.{64})/g, "$1\n").trimEnd()
  }\n-----END PRIVATE KEY-----\n`;
}

const validity = () => ({
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 24 * 3600_000),
});

/** Makes a CA named `CN=name`. */
export async function createTestCa(name = "kubernetes-test-ca"): Promise<TestCa> {
  const keys = await keyPair();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    ...validity(),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const issue = async (
    subject: string,
    usage: string,
    names: x509.JsonGeneralNames,
  ): Promise<Pem> => {
    const leafKeys = await keyPair();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: caCert.subject,
      ...validity(),
      publicKey: leafKeys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([usage]),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      ],
    });
    return { cert: cert.toString("pem") + "\n", key: await keyPem(leafKeys.privateKey) };
  };
  return {
    cert: caCert.toString("pem") + "\n",
    key: await keyPem(keys.privateKey),
    server: () =>
      issue("CN=kube-apiserver", x509.ExtendedKeyUsage.serverAuth, [
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
        { type: "dns", value: "localhost" },
      ]),
    client: (cn, group) =>
      issue(group ? `CN=${cn}, O=${group}` : `CN=${cn}`, x509.ExtendedKeyUsage.clientAuth, []),
  };
}
