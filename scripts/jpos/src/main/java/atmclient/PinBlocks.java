package atmclient;

import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.HexFormat;
import javax.crypto.Cipher;
import javax.crypto.spec.SecretKeySpec;
import org.bouncycastle.crypto.BlockCipher;
import org.bouncycastle.crypto.engines.SM4Engine;
import org.bouncycastle.crypto.params.KeyParameter;

/**
 * ISO 9564-1 PIN blocks as docs/iso8583-acquirer.md asks for them: formats 0
 * and 3 (8 bytes, enciphered TDES-ECB under a double-length zone PIN key) and
 * format 4 (16 bytes, AES), built here from the standard with javax.crypto;
 * and for an acquirer with {@code pin_algorithm: sm4} the SM4-0 and SM4-4
 * blocks the document describes (SM4 from BouncyCastle).
 *
 * <p>The returned block is the upper-case hex the wire carries in DE 52 and
 * DE 125. Clear PIN fields are cleared after use (best effort: the JVM may
 * have copied them). Nothing here prints a PIN, a block or a key.
 */
final class PinBlocks {
  private static final SecureRandom RANDOM = new SecureRandom();
  private static final HexFormat HEX = HexFormat.of().withUpperCase();

  private PinBlocks() {}

  /** Format 0: 0 N PIN F-fill, XOR 0000 + the 12 rightmost PAN digits without the check digit. */
  static String format0(byte[] tdesKey, String pin, String pan) throws GeneralSecurityException {
    return tdes(tdesKey, field8(0x0, pin, false), pan);
  }

  /** Format 3: as format 0 with control 3 and a random fill of nibbles A–F. */
  static String format3(byte[] tdesKey, String pin, String pan) throws GeneralSecurityException {
    return tdes(tdesKey, field8(0x3, pin, true), pan);
  }

  /**
   * A format 0 block whose PIN field holds length nibble n and digits pin
   * (so n may disagree with the digits): a block that deciphers to no valid
   * format 0 block when n is outside 4–12.
   */
  static String format0Raw(byte[] tdesKey, int n, String pin, String pan) throws GeneralSecurityException {
    byte[] f = field8(0x0, pin, false);
    f[0] = (byte) (n & 0x0F);
    return tdes(tdesKey, f, pan);
  }

  private static byte[] field8(int control, String pin, boolean randomFill) {
    checkPin(pin);
    char[] nib = new char[16];
    nib[0] = Character.forDigit(control, 16);
    nib[1] = Character.forDigit(pin.length(), 16);
    for (int i = 0; i < 14; i++) {
      if (i < pin.length()) {
        nib[2 + i] = pin.charAt(i);
      } else {
        nib[2 + i] = randomFill ? Character.forDigit(10 + RANDOM.nextInt(6), 16) : 'F';
      }
    }
    byte[] f = HEX.parseHex(new String(nib));
    Arrays.fill(nib, '0');
    return f;
  }

  private static String tdes(byte[] key, byte[] pinField, String pan) throws GeneralSecurityException {
    String account = "000000000000" + pan.substring(0, pan.length() - 1); // a PAN under 13 digits: zeros in front
    byte[] panField = HEX.parseHex("0000" + account.substring(account.length() - 12));
    for (int i = 0; i < 8; i++) {
      pinField[i] ^= panField[i];
    }
    byte[] k24 = new byte[24]; // K1 K2 K1: javax.crypto's DESede takes 24 bytes
    System.arraycopy(key, 0, k24, 0, 16);
    System.arraycopy(key, 0, k24, 16, 8);
    try {
      Cipher c = Cipher.getInstance("DESede/ECB/NoPadding");
      c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(k24, "DESede"));
      return HEX.formatHex(c.doFinal(pinField));
    } finally {
      Arrays.fill(k24, (byte) 0);
      Arrays.fill(pinField, (byte) 0);
    }
  }

  /**
   * Format 4 (ISO 9564-1:2017): plain PIN field 4 N PIN A-fill to 16
   * nibbles then 8 random bytes; PAN field M (PAN length − 12) then the
   * PAN, zero-filled to 16 bytes; block = AES(K, AES(K, PIN field) XOR PAN field).
   */
  static String format4(byte[] aesKey, String pin, String pan) throws GeneralSecurityException {
    Cipher c = Cipher.getInstance("AES/ECB/NoPadding");
    c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(aesKey, "AES"));
    return format4With(b -> c.doFinal(b), pin, pan);
  }

  /** SM4-4: format 4's PIN and PAN fields, SM4 in place of AES. */
  static String format4SM4(byte[] sm4Key, String pin, String pan) throws GeneralSecurityException {
    return format4With(sm4(sm4Key), pin, pan);
  }

  /**
   * SM4-0, format 0 over 128 bits: PIN field 0 N PIN F-fill over 32 nibbles,
   * XOR 20 zero nibbles and the 12 rightmost PAN digits without the check
   * digit, enciphered once under SM4.
   */
  static String format0SM4(byte[] sm4Key, String pin, String pan) throws GeneralSecurityException {
    checkPin(pin);
    StringBuilder p = new StringBuilder("0").append(Character.forDigit(pin.length(), 16)).append(pin);
    while (p.length() < 32) {
      p.append('F');
    }
    byte[] f = HEX.parseHex(p);
    p.setLength(0);
    String account = "000000000000" + pan.substring(0, pan.length() - 1);
    byte[] panField = HEX.parseHex("00000000000000000000" + account.substring(account.length() - 12));
    for (int i = 0; i < 16; i++) {
      f[i] ^= panField[i];
    }
    try {
      return HEX.formatHex(sm4(sm4Key).apply(f));
    } finally {
      Arrays.fill(f, (byte) 0);
    }
  }

  /** One 16-byte block enciphered under a key the function holds. */
  private interface Block16 {
    byte[] apply(byte[] in) throws GeneralSecurityException;
  }

  private static Block16 sm4(byte[] key) {
    return in -> {
      BlockCipher e = new SM4Engine();
      e.init(true, new KeyParameter(key));
      byte[] out = new byte[16];
      e.processBlock(in, 0, out, 0);
      return out;
    };
  }

  private static String format4With(Block16 cipher, String pin, String pan) throws GeneralSecurityException {
    checkPin(pin);
    StringBuilder p = new StringBuilder("4").append(Character.forDigit(pin.length(), 16)).append(pin);
    while (p.length() < 16) {
      p.append('A');
    }
    byte[] pinField = new byte[16];
    System.arraycopy(HEX.parseHex(p), 0, pinField, 0, 8);
    p.setLength(0);
    byte[] fill = new byte[8];
    RANDOM.nextBytes(fill);
    System.arraycopy(fill, 0, pinField, 8, 8);
    if (pan.length() < 12 || pan.length() > 19) {
      throw new IllegalArgumentException("format 4 needs a PAN of 12 to 19 digits");
    }
    StringBuilder a = new StringBuilder().append(Character.forDigit(pan.length() - 12, 16)).append(pan);
    while (a.length() < 32) {
      a.append('0');
    }
    byte[] panField = HEX.parseHex(a);
    try {
      byte[] i = cipher.apply(pinField);
      for (int k = 0; k < 16; k++) {
        i[k] ^= panField[k];
      }
      return HEX.formatHex(cipher.apply(i));
    } finally {
      Arrays.fill(pinField, (byte) 0);
    }
  }

  private static void checkPin(String pin) {
    if (pin.length() < 1 || pin.length() > 14 || !pin.chars().allMatch(Character::isDigit)) {
      throw new IllegalArgumentException("a PIN is 1 to 14 digits here"); // never the PIN itself
    }
  }
}
