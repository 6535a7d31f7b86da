package atmclient;

import java.util.Arrays;
import java.util.HexFormat;
import org.bouncycastle.crypto.engines.SM4Engine;
import org.bouncycastle.crypto.params.KeyParameter;

/**
 * SM4-ECB (GB/T 32907-2016, BouncyCastle's engine) for the SM4 form of DE
 * 123: a key enciphered under the SM4 ZMK, and its check value, the leftmost
 * 8 bytes of SM4(K, 0¹⁶) in hex. Callers clear what they get back.
 */
final class Sm4 {
  private Sm4() {}

  static byte[] encrypt(byte[] key, byte[] data) {
    return ecb(true, key, data);
  }

  static byte[] decrypt(byte[] key, byte[] data) {
    return ecb(false, key, data);
  }

  static String kcv(byte[] key) {
    return HexFormat.of().withUpperCase().formatHex(Arrays.copyOf(encrypt(key, new byte[16]), 8));
  }

  private static byte[] ecb(boolean encrypt, byte[] key, byte[] data) {
    SM4Engine e = new SM4Engine();
    e.init(encrypt, new KeyParameter(key));
    byte[] out = new byte[data.length];
    for (int off = 0; off < data.length; off += 16) {
      e.processBlock(data, off, out, off);
    }
    return out;
  }
}
