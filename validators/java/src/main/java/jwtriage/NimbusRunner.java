package jwtriage;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jose.util.JSONObjectUtils;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Nimbus JOSE+JWT runner: a JWKSourceBuilder source fetches the harness's JWKS, DefaultJWTProcessor judges
 * each token. Protocol (validators/README.md): args are JWKS_URL ISSUER AUDIENCE ALGS; one ready line,
 * then one JSON reply per JSON request line on stdin.
 */
public final class NimbusRunner {
  private NimbusRunner() {}

  static String nimbusVersion() throws Exception {
    String path = "/META-INF/maven/com.nimbusds/nimbus-jose-jwt/pom.properties";
    try (InputStream in = NimbusRunner.class.getResourceAsStream(path)) {
      Properties properties = new Properties();
      if (in != null) {
        properties.load(in);
      }
      return properties.getProperty("version", "unknown");
    }
  }

  static DefaultJWTProcessor<SecurityContext> processor(String url, String issuer, String audience, String algs)
      throws Exception {
    // Cache 1 s so the retired key drops out quickly; no rate limit so a kid miss refetches at once
    // (the default allows one refresh per 30 s: see README).
    JWKSource<SecurityContext> source = JWKSourceBuilder.create(new URL(url))
        .cache(1_000, 1_000).rateLimited(false).refreshAheadCache(false).retrying(false).build();
    Set<JWSAlgorithm> allowed = Arrays.stream(algs.split(",")).map(JWSAlgorithm::parse).collect(Collectors.toSet());
    DefaultJWTProcessor<SecurityContext> processor = new DefaultJWTProcessor<>();
    processor.setJWSKeySelector(new JWSVerificationKeySelector<>(allowed, source));
    DefaultJWTClaimsVerifier<SecurityContext> claims = new DefaultJWTClaimsVerifier<>(
        audience, new JWTClaimsSet.Builder().issuer(issuer).build(), Set.of("exp"));
    claims.setMaxClockSkew(0);
    processor.setJWTClaimsSetVerifier(claims);
    return processor;
  }

  static Map<String, Object> judge(DefaultJWTProcessor<SecurityContext> processor, Map<String, Object> request) {
    Map<String, Object> reply = new LinkedHashMap<>();
    reply.put("case", request.get("case"));
    try {
      processor.process((String) request.get("token"), null);
      reply.put("accepted", true);
    } catch (Exception e) {
      reply.put("accepted", false);
      reply.put("error_class", e.getClass().getName());
      reply.put("message", e.getMessage());
      reply.put("logged", e.getMessage());
    }
    return reply;
  }

  public static void main(String[] args) throws Exception {
    DefaultJWTProcessor<SecurityContext> processor = processor(args[0], args[1], args[2], args[3]);
    Map<String, Object> ready = new LinkedHashMap<>();
    ready.put("ready", true);
    ready.put("library", "nimbus-jose-jwt");
    ready.put("version", nimbusVersion());
    System.out.println(JSONObjectUtils.toJSONString(ready));
    System.out.flush();
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      if (!line.isBlank()) {
        System.out.println(JSONObjectUtils.toJSONString(judge(processor, JSONObjectUtils.parse(line))));
        System.out.flush();
      }
    }
  }
}
