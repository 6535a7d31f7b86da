package atmclient;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.HexFormat;
import javax.crypto.Cipher;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.bouncycastle.crypto.engines.DESedeEngine;
import org.bouncycastle.crypto.macs.CMac;
import org.bouncycastle.crypto.params.KeyParameter;

/**
 * TR-31 (ANSI X9.143) key blocks of version B, the form docs/iso8583-acquirer.md
 * takes in DE 123 for a TDES zone master key: the key block protection key
 * (the ZMK) gives an encryption and a MAC key by the CMAC-based derivation of
 * X9.143 (counter, usage 0000 or 0001, separator, algorithm 0000 for a
 * double-length TDES key, length 0080); the MAC is TDES-CMAC under the MAC key
 * of the header and the clear key field (2-byte key length in bits, the key,
 * random padding); the key field is TDES-CBC under the encryption key with
 * the MAC as IV. Key bytes are cleared after use (best effort); nothing here
 * prints them.
 */
final class KeyBlocks {
  private static final SecureRandom RANDOM = new SecureRandom();
  private static final HexFormat HEX = HexFormat.of().withUpperCase();

  private KeyBlocks() {}

  /**
   * Wraps a double-length TDES key under zmk as a version B block with
   * usage P0 (PIN encryption), algorithm T, the given mode of use, key
   * version 00, not exportable, no optional blocks: header, 32 bytes of key
   * field (padded as for the longest TDES key), 8 bytes of MAC.
   */
  static String wrapB(byte[] zmk, byte[] key, char mode) throws GeneralSecurityException {
    return wrapB(zmk, key, "P0", 'T', mode);
  }

  /**
   * A version B block with the header fields given and optional blocks (each
   * ID, 2 hex digits of length counting ID and length, data), padded with a PB
   * block to a multiple of 8 characters when they are not.
   */
  static String wrapB(byte[] zmk, byte[] key, String usage, char algorithm, char mode, String... optional)
      throws GeneralSecurityException {
    StringBuilder opt = new StringBuilder();
    for (String o : optional) {
      opt.append(o);
    }
    int count = optional.length;
    if (opt.length() % 8 != 0) {
      int pb = 4 + (8 - (opt.length() + 4) % 8) % 8;
      opt.append(String.format("PB%02X", pb)).append("0".repeat(pb - 4));
      count++;
    }
    byte[] field = new byte[32];
    field[0] = 0x00;
    field[1] = (byte) 0x80; // 128 bits
    System.arraycopy(key, 0, field, 2, 16);
    byte[] pad = new byte[14];
    RANDOM.nextBytes(pad);
    System.arraycopy(pad, 0, field, 18, 14);
    int length = 16 + opt.length() + 2 * field.length + 16;
    String header = String.format("B%04d%s%c%c00N%02d00", length, usage, algorithm, mode, count) + opt;
    byte[] kbek = derive(zmk, 0x0000);
    byte[] kbak = derive(zmk, 0x0001);
    try {
      byte[] mac = cmac(kbak, concat(header.getBytes(StandardCharsets.US_ASCII), field));
      byte[] enc = tdesCbc(Cipher.ENCRYPT_MODE, kbek, mac, field);
      return header + HEX.formatHex(enc) + HEX.formatHex(mac);
    } finally {
      Arrays.fill(field, (byte) 0);
      Arrays.fill(kbek, (byte) 0);
      Arrays.fill(kbak, (byte) 0);
    }
  }

  /**
   * Whether block, a version B block without optional blocks, carries key
   * under zmk with a MAC that verifies: the check the document's worked
   * example allows on this implementation.
   */
  static boolean carries(String block, byte[] zmk, byte[] key) throws GeneralSecurityException {
    String header = block.substring(0, 16); // no optional blocks
    byte[] enc = HEX.parseHex(block.substring(16, block.length() - 16));
    byte[] mac = HEX.parseHex(block.substring(block.length() - 16));
    byte[] kbek = derive(zmk, 0x0000);
    byte[] kbak = derive(zmk, 0x0001);
    byte[] field = tdesCbc(Cipher.DECRYPT_MODE, kbek, mac, enc);
    try {
      boolean macOK = MessageDigest.isEqual(mac, cmac(kbak, concat(header.getBytes(StandardCharsets.US_ASCII), field)));
      int bits = ((field[0] & 0xFF) << 8) | (field[1] & 0xFF);
      return macOK && bits == 8 * key.length
          && MessageDigest.isEqual(Arrays.copyOfRange(field, 2, 2 + key.length), key);
    } finally {
      Arrays.fill(field, (byte) 0);
      Arrays.fill(kbek, (byte) 0);
      Arrays.fill(kbak, (byte) 0);
    }
  }

  /** The 16-byte key of usage (0000 encryption, 0001 MAC) derived from a double-length TDES KBPK. */
  private static byte[] derive(byte[] kbpk, int usage) {
    byte[] out = new byte[16];
    for (int counter = 1; counter <= 2; counter++) {
      byte[] input = {(byte) counter, (byte) (usage >> 8), (byte) usage, 0x00, 0x00, 0x00, 0x00, (byte) 0x80};
      System.arraycopy(cmac(kbpk, input), 0, out, 8 * (counter - 1), 8);
    }
    return out;
  }

  private static byte[] cmac(byte[] key, byte[] data) {
    CMac mac = new CMac(new DESedeEngine());
    mac.init(new KeyParameter(key));
    mac.update(data, 0, data.length);
    byte[] out = new byte[mac.getMacSize()];
    mac.doFinal(out, 0);
    return out;
  }

  private static byte[] tdesCbc(int mode, byte[] key, byte[] iv, byte[] data) throws GeneralSecurityException {
    byte[] k24 = new byte[24];
    System.arraycopy(key, 0, k24, 0, 16);
    System.arraycopy(key, 0, k24, 16, 8);
    try {
      Cipher c = Cipher.getInstance("DESede/CBC/NoPadding");
      c.init(mode, new SecretKeySpec(k24, "DESede"), new IvParameterSpec(iv));
      return c.doFinal(data);
    } finally {
      Arrays.fill(k24, (byte) 0);
    }
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }
}
