package atmclient;

import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.util.Set;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The simulated issuer's card population of the embedded default, from
 * docs/iso8583-acquirer.md ("Development setup"): 10000 cards per BIN range
 * (seed 1), the PAN the range then the card's index then a Luhn digit (16
 * digits), the initial PIN derived by HMAC-SHA-256; and the weak-PIN rules of
 * the embedded default, to choose new PINs it takes or refuses on purpose.
 */
final class DevCards {
  static final long SEED = 1;
  static final int PER_RANGE = 10000;

  private static final Set<String> REFUSED = Set.of("1212", "2121", "1122", "2211", "1313", "1010", "2000",
      "2001", "1004", "6969", "2580", "0852", "1470", "0741", "3690", "0963", "1357", "2468", "1590", "7531",
      "1100", "1984", "1999", "2020", "5683", "1379", "1236", "2552", "0101", "0007");

  private DevCards() {}

  /** The PAN of card index within range: 16 digits with the Luhn check digit last. */
  static String pan(String range, int index) {
    String body = range + String.format("%0" + (15 - range.length()) + "d", index);
    return body + luhn(body);
  }

  static char luhn(String body) {
    int sum = 0;
    for (int i = 0; i < body.length(); i++) {
      int d = body.charAt(body.length() - 1 - i) - '0';
      if (i % 2 == 0) {
        d *= 2;
        if (d > 9) {
          d -= 9;
        }
      }
      sum += d;
    }
    return (char) ('0' + (10 - sum % 10) % 10);
  }

  /** The card's initial PIN (before any change by anyone). */
  static String initialPin(String pan) throws GeneralSecurityException {
    Mac mac = Mac.getInstance("HmacSHA256");
    mac.init(new SecretKeySpec(ByteBuffer.allocate(8).putLong(SEED).array(), "HmacSHA256"));
    ByteBuffer h = ByteBuffer.wrap(mac.doFinal(pan.getBytes(java.nio.charset.StandardCharsets.US_ASCII)));
    for (int off = 0; off <= 28; off += 2) {
      String p = String.format("%04d", Integer.toUnsignedLong(h.getInt(off)) % 10000);
      if (!repeated(p) && !stepped(p)) {
        return p;
      }
    }
    return "5821";
  }

  static boolean repeated(String p) {
    return p.chars().allMatch(c -> c == p.charAt(0));
  }

  /** Each digit one up, or each one down, from the one before, wrapping 9↔0. */
  static boolean stepped(String p) {
    boolean up = true;
    boolean down = true;
    for (int i = 1; i < p.length(); i++) {
      int d = (p.charAt(i) - p.charAt(i - 1) + 10) % 10;
      up &= d == 1;
      down &= d == 9;
    }
    return up || down;
  }

  /** Whether the embedded default's weak-PIN rules refuse newPin for this card (P6). */
  static boolean weak(String pan, String currentPin, String newPin) {
    return repeated(newPin) || stepped(newPin) || pan.contains(newPin) || newPin.equals(currentPin)
        || REFUSED.contains(newPin);
  }

  /** Card answered 96 (index ends in 998) or 57 (999) by the simulator. */
  static boolean special(int index) {
    return index % 1000 == 998 || index % 1000 == 999;
  }
}
